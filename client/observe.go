package client

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookrelay/hookrelay/protocol"
)

// DeliveryEvent is one delivery as Config.OnDelivery sees it: once when it
// starts (Response nil) and once when it is answered.
type DeliveryEvent struct {
	Request *protocol.DeliveryRequest
	// Route names the route the delivery took ("to" for the fallback
	// target); "" when no route matched or a Handler answered.
	Route string
	// Target is the URL it went to; "" when none.
	Target   string
	Started  time.Time
	Response *protocol.DeliveryResponse // nil while in flight
	SavedTo  string                     // the file it was saved to (Config.SaveDir)
}

// StatusClass is the delivery's outcome in a word: the app's status class
// ("2xx" ... "5xx") or, when the app gave no answer, the error code
// (connection_refused, timeout, no_route, ...); "" while in flight.
func (e DeliveryEvent) StatusClass() string {
	switch r := e.Response; {
	case r == nil:
		return ""
	case r.ErrorCode != "":
		return r.ErrorCode
	case r.Error != "":
		return protocol.ErrCodeTarget
	}
	return strconv.Itoa(e.Response.Status/100) + "xx"
}

// agentMetrics are the agent's Prometheus metrics (Config.Metrics). A nil
// *agentMetrics records nothing.
type agentMetrics struct {
	deliveries *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	inFlight   prometheus.Gauge
	reconnects prometheus.Counter
	connected  prometheus.Gauge
	targetUp   *prometheus.GaugeVec
}

// The names of the agent's metrics, as README.md documents them.
const (
	metricDeliveries = "hookrelay_agent_deliveries_total"
	metricDuration   = "hookrelay_agent_delivery_duration_seconds"
	metricInFlight   = "hookrelay_agent_deliveries_in_flight"
	metricReconnects = "hookrelay_agent_reconnects_total"
	metricConnected  = "hookrelay_agent_connected"
	metricTargetUp   = "hookrelay_agent_target_up"
)

func newAgentMetrics(reg prometheus.Registerer) (*agentMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &agentMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricDeliveries,
			Help: "Deliveries answered, by channel, route and status: the app's status class (2xx..5xx) or the error code when it gave no answer (connection_refused, timeout, no_route, ...).",
		}, []string{"channel", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricDuration,
			Help:    "Time the target took to answer a delivery, by channel and route.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"channel", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricInFlight, Help: "Deliveries being forwarded now.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricReconnects, Help: "Times the agent lost or could not open its session with the relay and tried again.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricConnected, Help: "1 while the agent has a session with the relay, else 0.",
		}),
		targetUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricTargetUp, Help: "1 while the target accepts connections and answers, 0 while it is down.",
		}, []string{"target"}),
	}
	for _, c := range []prometheus.Collector{m.deliveries, m.duration, m.inFlight, m.reconnects, m.connected, m.targetUp} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *agentMetrics) state(s State) {
	if m == nil {
		return
	}
	if s.Status == StatusConnected {
		m.connected.Set(1)
	} else {
		m.connected.Set(0)
	}
	if s.Status == StatusReconnecting {
		m.reconnects.Inc()
	}
}

func (m *agentMetrics) delivery(e DeliveryEvent) {
	if m == nil {
		return
	}
	if e.Response == nil {
		m.inFlight.Inc()
		return
	}
	m.inFlight.Dec()
	route := e.Route
	if route == "" {
		route = "none"
	}
	m.deliveries.WithLabelValues(e.Request.Channel, route, e.StatusClass()).Inc()
	m.duration.WithLabelValues(e.Request.Channel, route).Observe(e.Response.Duration.Seconds())
}

func (m *agentMetrics) target(st TargetStatus) {
	if m == nil {
		return
	}
	up := 0.0
	if st.Up {
		up = 1
	}
	m.targetUp.WithLabelValues(st.URL).Set(up)
}
