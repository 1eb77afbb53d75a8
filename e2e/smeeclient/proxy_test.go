package smeeclient

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// cutProxy forwards TCP connections to a target until cut: then it closes
// the open ones and refuses new ones until restore. It records the start
// of what each side sent, so a test can see request headers and answers.
type cutProxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	down     bool
	refused  int
	open     map[net.Conn]struct{}
	requests []*bytes.Buffer // the first bytes each client sent
	answers  []*bytes.Buffer // the first bytes the target answered
	wg       sync.WaitGroup
}

const recordBytes = 4096

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, open: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.refused++
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		req, ans := &bytes.Buffer{}, &bytes.Buffer{}
		p.mu.Lock()
		p.open[c], p.open[up] = struct{}{}, struct{}{}
		p.requests, p.answers = append(p.requests, req), append(p.answers, ans)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, c, req)
		go p.pipe(c, up, ans)
	}
}

// pipe copies src to dst, recording the first bytes, then closes both.
func (p *cutProxy) pipe(dst, src net.Conn, record *bytes.Buffer) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if room := recordBytes - record.Len(); room > 0 {
				record.Write(buf[:min(n, room)])
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil { // the end, a cut or a reset: both sides close
			break
		}
	}
	p.mu.Lock()
	delete(p.open, src)
	delete(p.open, dst)
	p.mu.Unlock()
	src.Close()
	dst.Close()
}

// cut closes every forwarded connection and refuses new ones.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.open {
		c.Close()
	}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// waitRefused waits until n connections were refused while cut.
func (p *cutProxy) waitRefused(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		p.mu.Lock()
		refused := p.refused
		p.mu.Unlock()
		if refused >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect attempt reached the cut proxy within %s", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sawHeader reports whether a request's head carried a header line
// starting with prefix (case-insensitive).
func (p *cutProxy) sawHeader(prefix string) bool {
	for _, line := range strings.Split(p.requestHeads(), "\r\n") {
		if len(line) >= len(prefix) && strings.EqualFold(line[:len(prefix)], prefix) {
			return true
		}
	}
	return false
}

// sawAnswer reports whether the target answered a connection with a first
// line starting with prefix.
func (p *cutProxy) sawAnswer(prefix string) bool {
	for _, line := range strings.Split(p.answerLines(), "\n") {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

// requestHeads returns the recorded requests' heads.
func (p *cutProxy) requestHeads() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, r := range p.requests {
		head, _, _ := strings.Cut(r.String(), "\r\n\r\n")
		b.WriteString(head + "\r\n\r\n")
	}
	return b.String()
}

// answerLines returns the first line of each recorded answer.
func (p *cutProxy) answerLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var lines []string
	for _, a := range p.answers {
		first, _, _ := strings.Cut(a.String(), "\r\n")
		lines = append(lines, first)
	}
	return strings.Join(lines, "\n")
}

func (p *cutProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
