package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAdminHandlerServesProfiles fetches what an operator asks the admin
// listener for: the profile index, a heap profile and the goroutine dump.
func TestAdminHandlerServesProfiles(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(AdminHandler())
	defer srv.Close()
	for _, tt := range []struct {
		path, want string
	}{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile:"},
		{"/debug/pprof/heap?debug=1", "heap profile:"},
		{"/debug/pprof/cmdline", ""},
	} {
		resp, err := http.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tt.want) {
			t.Errorf("GET %s = %d, %.200q; want 200 with %q", tt.path, resp.StatusCode, body, tt.want)
		}
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the admin listener = %d, want 404 (metrics stay on the public one)", resp.StatusCode)
	}
}
