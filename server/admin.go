package server

import (
	"net/http"
	"net/http/pprof"
)

// AdminHandler serves the relay's diagnostics: Go's profiler under
// /debug/pprof/ (CPU and heap profiles, goroutines, execution traces). It
// needs no token, so it belongs on a listener of its own that only
// operators reach (hookrelay server --admin-listen 127.0.0.1:6060), never
// on the public one.
func AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
