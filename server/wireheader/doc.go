// Package wireheader recovers the header lines of HTTP/1.x requests exactly as
// they were sent: names in their original case, values, order across names and
// repeats. Go's net/http server parses headers into a map, which keeps the
// values of one name in order but loses the order across names and the case of
// names; hookrelay promises both to the developer's app.
//
// # How it works
//
// NewListener wraps the listener of an http.Server. Every accepted connection
// watches the bytes net/http reads from it and runs a small incremental parser
// over that byte stream: it collects each request's header block (request line
// and header lines, up to the empty line), works out the body framing the way
// net/http does (Content-Length, or Transfer-Encoding: chunked with chunk
// extensions and trailers), skips exactly the body, and continues with the next
// keep-alive or pipelined request. Each complete header block goes into a small
// per-connection FIFO queue.
//
// net/http serves the requests of one connection one after another, in the
// order they arrived, so the handler of the n-th request finds the n-th block
// at the head of the queue. Headers pops it and checks that it belongs to the
// request (method, request-URI, and every header name with its values compared
// with r.Header). Any disagreement means the recorder lost track of the stream:
// Headers then answers ok=false and the connection's recorder is marked
// unusable, so every later request on it falls back to r.Header too. Headers
// never returns a block that disagrees with the request.
//
// # Responses
//
// net/http writes a response's header fields sorted by name. A handler that
// must answer with fields in a given order and case (hookrelay passes on an
// app's answer) calls SetResponseHeaders before writing: the connection then
// inserts those lines right after the status line of the response head it
// writes next (interim 1xx heads pass unchanged). net/http still writes the
// fields of w.Header() after them; keep the relayed ones out of the map.
// Connections stay keep-alive: nothing is hijacked.
//
// # Wiring
//
//	srv := &http.Server{
//		Handler:        handler,
//		MaxHeaderBytes: maxHeader,
//		ConnContext:    wireheader.ConnContext,
//	}
//	err := srv.Serve(wireheader.NewListener(ln, maxHeader))
//
// and in the handler, before anything modifies r.Header:
//
//	hs, ok := wireheader.Headers(r)
//	if !ok {
//		// fall back to r.Header (order across names and case are lost)
//	}
//
// Headers must be called exactly once for every request served on the
// listener, from its handler: the queue is matched by position, so a request
// whose handler never calls Headers (another route, a redirect answered by a
// router, "OPTIONS *" answered by net/http itself) leaves its block at the head
// of the queue and the next call on that connection finds a mismatch and falls
// back from then on. (Only a skipped request with exactly the same method,
// request-URI and header values would pass that check, and lend its order and
// case.) Calling Headers from the first middleware, which runs for every route
// before anything can answer early, or serving other routes from a different
// listener, avoids this.
//
// # TLS
//
// The recorder must see plaintext, so NewListener must wrap the listener that
// yields plaintext connections: wrap tls.NewListener's result, not the TCP
// listener under it:
//
//	ln = wireheader.NewListener(tls.NewListener(tcpLn, tlsConfig), maxHeader)
//	srv.Serve(ln) // not ServeTLS
//
// http.Server then does not see a *tls.Conn: it performs no handshake of its
// own (the handshake runs on the first Read, under the server's read
// deadlines), Request.TLS is nil, and HTTP/2 cannot be negotiated, so
// tlsConfig.NextProtos must not offer "h2" (use []string{"http/1.1"}). The
// *tls.Conn stays reachable through the connection's NetConn method, for
// example from a ConnContext hook that calls this package's ConnContext and
// also stores c.(interface{ NetConn() net.Conn }).NetConn().
//
// # Limits
//
// Only HTTP/1.x is recorded. Recording stops for good on a connection (its
// later requests fall back to r.Header) when a header block exceeds
// maxHeaderBytes, when the stream is something net/http would reject, after a
// request that may switch protocols (Connection: Upgrade or an Upgrade header,
// CONNECT, the HTTP/2 preface; also when the handler declines the switch), or
// when more blocks are waiting than the queue's byte budget allows. Headers folded over several lines (obs-fold) are answered
// with ok=false for that request only. Trailers of chunked bodies are skipped,
// not recorded. Memory per connection is bounded by about twice maxHeaderBytes
// plus 36 KiB; in practice it is the size of one or two header blocks.
package wireheader
