package ui

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// allowedURL reports whether an absolute URL in the files is one no
// browser fetches: an XML namespace, or the localhost app of the help text
// ("hookrelay connect CH --to http://localhost:3000/webhooks").
func allowedURL(u string) bool {
	return u == "http://www.w3.org/2000/svg" || strings.HasPrefix(u, "http://localhost:")
}

// TestNoExternalReferences keeps the page working offline: no file names
// another origin (a CDN, a web font, an analytics script), whether as an
// absolute URL or a protocol-relative one.
func TestNoExternalReferences(t *testing.T) {
	absolute := regexp.MustCompile("(?i)https?://[^\\s\"'<>)`]+")
	relative := regexp.MustCompile(`(?i)(src|href|action)\s*=\s*["']//|url\(\s*["']?//|@import`)
	n := 0
	err := fs.WalkDir(Files(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			return err
		}
		for _, m := range absolute.FindAllString(string(b), -1) {
			if !allowedURL(m) {
				t.Errorf("%s refers to %s: the inspector must load nothing from other origins", name, m)
			}
		}
		if m := relative.FindString(string(b)); m != "" {
			t.Errorf("%s has %q: a protocol-relative or imported resource", name, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Fatalf("only %d embedded files", n)
	}
}

// TestNoInlineScriptOrStyle keeps index.html within the CSP: scripts and
// styles come from files, never from the markup.
func TestNoInlineScriptOrStyle(t *testing.T) {
	b, err := fs.ReadFile(Files(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	for _, m := range regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(html, -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("index.html has an inline script %q", m[0])
		}
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`), // onclick= and friends
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)javascript:`),
	} {
		if m := re.FindString(html); m != "" {
			t.Errorf("index.html has %q, which the Content-Security-Policy blocks", m)
		}
	}
	for _, f := range []string{"app.js", "format.js"} {
		b, err := fs.ReadFile(Files(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s: data must reach the page as text", f, bad)
			}
		}
	}
}

func TestHandler(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path   string
		status int
		ctype  string
	}{
		{"/", http.StatusOK, "text/html; charset=utf-8"},
		{"/ui/", http.StatusOK, "text/html; charset=utf-8"},
		{AssetPrefix + "app.js", http.StatusOK, "text/javascript; charset=utf-8"},
		{AssetPrefix + "app.css", http.StatusOK, "text/css; charset=utf-8"},
		{AssetPrefix + "missing.js", http.StatusNotFound, "application/json"},
		{AssetPrefix, http.StatusNotFound, "application/json"},
		{AssetPrefix + "../ui.go", http.StatusNotFound, "application/json"},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", tc.path, nil))
		if w.Code != tc.status || w.Header().Get("Content-Type") != tc.ctype {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, w.Code, w.Header().Get("Content-Type"), tc.status, tc.ctype)
		}
		for _, k := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options"} {
			if w.Header().Get(k) == "" {
				t.Errorf("GET %s: no %s", tc.path, k)
			}
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("HEAD", "/", nil))
	if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD /: %d, %d body bytes", w.Code, w.Body.Len())
	}
}
