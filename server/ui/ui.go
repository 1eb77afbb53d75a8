// Package ui holds the inspector's web page: HTML, CSS and JavaScript
// written by hand (no build step), embedded in the binary so that the relay
// serves it without any network access, and the handler that serves them
// with the security headers every page of the relay carries.
//
// The page is a single document (index.html) that routes with the URL
// fragment (#/c/CHANNEL/EVENT) and talks only to the relay's own JSON API,
// the live stream and the /ui/ session endpoints.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// AssetPrefix is the URL path under which the embedded files are served.
const AssetPrefix = "/ui/assets/"

// ContentSecurityPolicy lets the page load scripts, styles, images and
// connections from the relay alone: no inline script, no other origin, and
// no framing.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// SetSecurityHeaders sets the headers every inspector response carries.
func SetSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// Files returns the embedded files, rooted where AssetPrefix points.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // "static" is a valid path: cannot happen
	}
	return sub
}

// Handler serves the page and its assets from memory.
type Handler struct {
	files map[string]file // by name under static/
}

type file struct {
	body  []byte
	ctype string
	etag  string
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

// New loads the embedded files. It fails only when a file has a type it
// does not know how to serve.
func New() (*Handler, error) {
	h := &Handler{files: make(map[string]file)}
	err := fs.WalkDir(Files(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(Files(), name)
		if err != nil {
			return err
		}
		ctype, ok := contentTypes[path.Ext(name)]
		if !ok {
			return fmt.Errorf("ui: no content type for %s", name)
		}
		sum := sha256.Sum256(body)
		h.files[name] = file{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load embedded inspector files: %w", err)
	}
	if _, ok := h.files["index.html"]; !ok {
		return nil, fmt.Errorf("ui: index.html is not embedded")
	}
	return h, nil
}

// ServeHTTP answers GET and HEAD: paths under AssetPrefix name a file, any
// other path gets the page itself (the relay routes only "/" and "/ui/"
// here).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := "index.html"
	if rest, ok := strings.CutPrefix(r.URL.Path, AssetPrefix); ok {
		name = rest
	}
	f, ok := h.files[name]
	hdr := w.Header()
	SetSecurityHeaders(hdr)
	if !ok || name == "" {
		hdr.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprintf(w, `{"error":%q,"code":"not_found"}`, "no such inspector file: "+r.URL.Path)
		return
	}
	hdr.Set("Content-Type", f.ctype)
	// Revalidate every time: a relay upgrade changes the files, and the
	// ETag makes the revalidation cheap.
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", f.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && match == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Length", fmt.Sprint(len(f.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(f.body)
	}
}
