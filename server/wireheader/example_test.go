package wireheader_test

import (
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/hookrelay/hookrelay/server/wireheader"
)

func ExampleHeaders() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	got := make(chan []wireheader.Header, 1)
	srv := &http.Server{
		MaxHeaderBytes: 64 << 10,
		ConnContext:    wireheader.ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hs, ok := wireheader.Headers(r)
			if !ok {
				// Fall back to r.Header: the order across names and
				// the case of names are lost.
				for name, values := range r.Header {
					for _, v := range values {
						hs = append(hs, wireheader.Header{Name: name, Value: v})
					}
				}
			}
			got <- hs
		}),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(wireheader.NewListener(ln, srv.MaxHeaderBytes))
	}()
	defer func() {
		srv.Close()
		<-done
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /h/ch HTTP/1.1\r\n"+
		"host: relay.example\r\n"+
		"X-GitHub-Event: push\r\n"+
		"x-dup: 1\r\n"+
		"Content-Length: 2\r\n"+
		"X-DUP: 2\r\n"+
		"\r\n{}")
	for _, h := range <-got {
		fmt.Printf("%s: %s\n", h.Name, h.Value)
	}
	// Output:
	// host: relay.example
	// X-GitHub-Event: push
	// x-dup: 1
	// Content-Length: 2
	// X-DUP: 2
}
