package dispatch

import "time"

// GroupState is how a group's deliveries go, for the agents list and the
// agents themselves.
type GroupState struct {
	ChannelID string
	Group     string
	// Paused: the group's target refuses connections; the relay sends one
	// probe at a time and the other events wait, in order.
	Paused bool
	// NextTry is when the next probe goes out (Paused only).
	NextTry time.Time
	// Reason is the target's last error (Paused only).
	Reason string
	// Waiting counts the events not yet done that the worker holds.
	Waiting int
}

// state returns the group's state; any goroutine may call it.
func (w *worker) state() GroupState {
	w.stateMu.Lock()
	defer w.stateMu.Unlock()
	st := w.shown
	st.ChannelID, st.Group = w.group.ChannelID, w.group.Name
	return st
}
