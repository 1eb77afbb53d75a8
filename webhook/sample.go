package webhook

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/hookrelay/hookrelay/protocol"
)

// The sample events are the project's own, written from each provider's
// public documentation of the event's shape: samples/PROVIDER/EVENT.json
// (kept indented for reading; sent compact unless the provider indents),
// or EVENT.form for a form body, one field per line, percent-encoded.
//
//go:embed samples
var sampleFiles embed.FS

// Sample names one sample event.
type Sample struct {
	Provider string `json:"provider"` // github, stripe, slack, standard-webhooks
	Event    string `json:"event"`    // e.g. push, payment_intent.succeeded, slash_command
	Scheme   string `json:"scheme"`   // the signature scheme (a Signer's)
}

// Request is a webhook request as a provider sends it. Host and
// Content-Length are left to the sender.
type Request struct {
	Method  string
	Headers []protocol.Header
	Body    []byte
}

// SampleOptions tunes BuildSample.
type SampleOptions struct {
	// Secret signs the request with the provider's scheme. Empty leaves a
	// GitHub request unsigned, as GitHub sends it for a webhook without a
	// secret; the other providers always sign, and need one.
	Secret string
	// Set overrides fields of the body, each "path=value" (see SetField).
	Set []string
	// Now is the time the event happens (default time.Now()): the
	// signature's timestamp and the body's time fields.
	Now time.Time
}

// ErrUnknownSample is returned by BuildSample for a provider or event it
// has no sample of.
var ErrUnknownSample = errors.New("no such sample event")

// provider describes how one provider sends its webhooks.
type provider struct {
	scheme string
	// indent: the provider sends indented JSON (Stripe); others send it compact.
	indent bool
	// headers lists the request's header lines in the provider's order;
	// the signature headers are there with empty values, to be signed in
	// place (or removed when a GitHub request is sent unsigned).
	headers func(event string, form bool) []protocol.Header
	// fresh sets the fields that differ on every real delivery (ids, times).
	fresh func(body []byte, now time.Time) ([]byte, error)
}

var providers = map[string]provider{
	"github": {
		scheme: GitHub,
		headers: func(event string, _ bool) []protocol.Header {
			return []protocol.Header{
				{Name: "Accept", Value: "*/*"},
				{Name: "Content-Type", Value: "application/json"},
				{Name: "User-Agent", Value: "GitHub-Hookshot/7d1e3a9"},
				{Name: "X-GitHub-Delivery", Value: newUUID()},
				{Name: "X-GitHub-Event", Value: event},
				{Name: "X-GitHub-Hook-ID", Value: "481516234"},
				{Name: "X-GitHub-Hook-Installation-Target-ID", Value: "702345871"},
				{Name: "X-GitHub-Hook-Installation-Target-Type", Value: "repository"},
				{Name: HeaderGitHubSHA1, Value: ""},
				{Name: HeaderGitHub, Value: ""},
			}
		},
		fresh: func(body []byte, _ time.Time) ([]byte, error) { return body, nil },
	},
	"stripe": {
		scheme: Stripe,
		indent: true,
		headers: func(string, bool) []protocol.Header {
			return []protocol.Header{
				{Name: "Content-Type", Value: "application/json; charset=utf-8"},
				{Name: "Cache-Control", Value: "no-cache"},
				{Name: "User-Agent", Value: "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
				{Name: "Accept", Value: "*/*; q=0.5, application/xml"},
				{Name: HeaderStripe, Value: ""},
			}
		},
		fresh: func(body []byte, now time.Time) ([]byte, error) {
			return setAll(body, map[string]any{"id": "evt_" + randomAlnum(24), "created": now.Unix()})
		},
	},
	"slack": {
		scheme: Slack,
		headers: func(_ string, form bool) []protocol.Header {
			ctype := "application/json"
			if form {
				ctype = "application/x-www-form-urlencoded"
			}
			return []protocol.Header{
				{Name: "Content-Type", Value: ctype},
				{Name: "User-Agent", Value: "Slackbot 1.0 (+https://api.slack.com/robots)"},
				{Name: "Accept", Value: "application/json,*/*"},
				{Name: HeaderSlackSignature, Value: ""},
				{Name: HeaderSlackTimestamp, Value: ""},
			}
		},
		fresh: func(body []byte, now time.Time) ([]byte, error) {
			if !json.Valid(body) { // the slash command's form
				return setForm(body, "trigger_id", fmt.Sprintf("%d.%d.%s", now.Unix(), now.UnixMicro()%1e6, randomHex(16)))
			}
			ts := fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)
			fresh := map[string]any{
				"event_id": "Ev" + strings.ToUpper(randomAlnum(10)), "event_time": now.Unix(),
				"event.ts": ts, "event.event_ts": ts, "challenge": randomAlnum(48),
			}
			fields := map[string]any{}
			for p, v := range fresh {
				if gjson.GetBytes(body, p).Exists() {
					fields[p] = v
				}
			}
			return setAll(body, fields)
		},
	},
	"standard-webhooks": {
		scheme: StandardWebhooks,
		headers: func(string, bool) []protocol.Header {
			return []protocol.Header{
				{Name: "Content-Type", Value: "application/json"},
				{Name: "User-Agent", Value: "hookrelay-trigger"},
				{Name: HeaderWebhookID, Value: NewMessageID()},
				{Name: HeaderWebhookTimestamp, Value: ""},
				{Name: HeaderWebhookSignature, Value: ""},
			}
		},
		fresh: func(body []byte, now time.Time) ([]byte, error) {
			return setAll(body, map[string]any{"timestamp": now.UTC().Format("2006-01-02T15:04:05.000Z")})
		},
	},
}

// Samples lists every sample event, by provider and event name.
func Samples() []Sample {
	var out []Sample
	_ = fs.WalkDir(sampleFiles, "samples", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		prov := path.Base(path.Dir(p))
		if pv, ok := providers[prov]; ok {
			name := strings.TrimSuffix(strings.TrimSuffix(path.Base(p), ".json"), ".form")
			out = append(out, Sample{Provider: prov, Event: name, Scheme: pv.scheme})
		}
		return nil
	})
	slices.SortFunc(out, func(a, b Sample) int {
		return strings.Compare(a.Provider+"\x00"+a.Event, b.Provider+"\x00"+b.Event)
	})
	return out
}

// Providers lists the providers that have samples.
func Providers() []string {
	names := make([]string, 0, len(providers))
	for name := range providers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// SampleScheme returns the signature scheme of a provider's samples.
func SampleScheme(providerName string) (string, bool) {
	p, ok := providers[providerName]
	return p.scheme, ok
}

// BuildSample returns a provider's sample event as the provider would send
// it now: its headers in the provider's order, fresh ids and times, the
// overrides of opts.Set applied, signed with opts.Secret.
func BuildSample(providerName, event string, opts SampleOptions) (Request, error) {
	p, ok := providers[providerName]
	if !ok {
		return Request{}, fmt.Errorf("%w: no provider %q (have %s)", ErrUnknownSample, providerName, strings.Join(Providers(), ", "))
	}
	body, form, err := readSample(providerName, event)
	if err != nil {
		return Request{}, err
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if !form && !p.indent {
		var compact bytes.Buffer
		if err := json.Compact(&compact, body); err != nil {
			return Request{}, fmt.Errorf("sample %s %s: %w", providerName, event, err)
		}
		body = compact.Bytes()
	}
	if body, err = p.fresh(body, opts.Now); err != nil {
		return Request{}, fmt.Errorf("sample %s %s: %w", providerName, event, err)
	}
	for _, set := range opts.Set {
		field, value, ok := strings.Cut(set, "=")
		if !ok || field == "" {
			return Request{}, fmt.Errorf("--set %q: want path=value, like data.object.amount=2000", set)
		}
		if body, err = SetField(body, field, value); err != nil {
			return Request{}, err
		}
	}
	req := Request{Method: "POST", Headers: p.headers(event, form), Body: body}
	if opts.Secret == "" {
		if p.scheme != GitHub {
			return Request{}, fmt.Errorf("%s signs every webhook: pass its signing secret: %w", providerName, ErrNoSecret)
		}
		req.Headers = Remove(Remove(req.Headers, HeaderGitHubSHA1), HeaderGitHub)
		return req, nil
	}
	signer := Signer{Scheme: p.scheme, Secret: opts.Secret}
	if req.Headers, err = signer.Sign(req.Headers, body, opts.Now); err != nil {
		return Request{}, err
	}
	return req, nil
}

// readSample returns a sample's body and whether it is a form.
func readSample(providerName, event string) ([]byte, bool, error) {
	if event == "" || strings.ContainsAny(event, "/\\") {
		return nil, false, fmt.Errorf("%w: event %q", ErrUnknownSample, event)
	}
	dir := "samples/" + providerName + "/"
	if body, err := fs.ReadFile(sampleFiles, dir+event+".json"); err == nil {
		return body, false, nil
	}
	if lines, err := fs.ReadFile(sampleFiles, dir+event+".form"); err == nil {
		return bytes.Join(bytes.Fields(lines), []byte("&")), true, nil
	}
	var have []string
	for _, s := range Samples() {
		if s.Provider == providerName {
			have = append(have, s.Event)
		}
	}
	return nil, false, fmt.Errorf("%w: %s has no event %q (have %s)", ErrUnknownSample, providerName, event, strings.Join(have, ", "))
}

// SetField sets one field of a JSON or form body, keeping the order and
// layout of the rest. For JSON, field is a dotted path (data.object.amount,
// commits.0.message; a literal dot is written \.), created when missing.
// The value is taken as JSON when the field holds a number, true, false,
// null, an object or an array and value is valid JSON; otherwise it is
// set as a string (quote it, '"123"', to force a string). For a form body,
// field is the form field's name and value its text.
func SetField(body []byte, field, value string) ([]byte, error) {
	if !json.Valid(body) {
		if bytes.ContainsAny(body, "{[\"") {
			return nil, errors.New("the body is neither JSON nor a form")
		}
		return setForm(body, field, value)
	}
	if err := checkIndexes(body, field); err != nil {
		return nil, err
	}
	old := gjson.GetBytes(body, field)
	var (
		out []byte
		err error
	)
	switch {
	case json.Valid([]byte(value)) && (old.Type != gjson.String || strings.HasPrefix(value, `"`)):
		out, err = sjson.SetRawBytes(body, field, []byte(value))
	default:
		out, err = sjson.SetBytes(body, field, value)
	}
	if err != nil {
		return nil, fmt.Errorf("--set %s: %w", field, err)
	}
	if !json.Valid(out) { // a path sjson reads in a way of its own
		return nil, fmt.Errorf("--set %s: not a path of the body's fields", field)
	}
	return out, nil
}

// maxIndex bounds an array index in a --set path: sjson fills a missing
// array with nulls up to the index.
const maxIndex = 10000

// checkIndexes refuses a path that would create an array longer than
// maxIndex, and the characters of gjson's queries. A number under an
// existing object is a key, not an index, and is let through.
func checkIndexes(body []byte, field string) error {
	type part struct {
		name   string // unescaped
		prefix string // the path up to it, as written
	}
	var (
		parts []part
		name  []byte
		start int
	)
	for i := 0; i < len(field); i++ {
		switch c := field[i]; c {
		case '\\':
			if i++; i < len(field) {
				name = append(name, field[i])
			}
		case '.':
			parts = append(parts, part{string(name), field[:max(start-1, 0)]})
			name, start = name[:0], i+1
		case '*', '?', '#', '|', '@', '!', '=', '<', '>', '%':
			return fmt.Errorf("--set %s: %q is not allowed in a path (write \\%c for the character itself)", field, c, c)
		default:
			name = append(name, c)
		}
	}
	parts = append(parts, part{string(name), field[:max(start-1, 0)]})
	for _, p := range parts {
		if p.name == "" {
			return fmt.Errorf("--set %s: a path has no empty parts (like a..b)", field)
		}
		if strings.Trim(p.name, "0123456789") != "" {
			continue
		}
		if n, err := strconv.Atoi(p.name); err == nil && n <= maxIndex {
			continue
		}
		parent := gjson.ParseBytes(body)
		if p.prefix != "" {
			parent = gjson.GetBytes(body, p.prefix)
		}
		if !parent.IsObject() {
			return fmt.Errorf("--set %s: array index %s is over %d", field, p.name, maxIndex)
		}
	}
	return nil
}

// setAll sets several JSON fields to Go values.
func setAll(body []byte, fields map[string]any) ([]byte, error) {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var err error
	for _, k := range keys {
		if body, err = sjson.SetBytes(body, k, fields[k]); err != nil {
			return nil, fmt.Errorf("set %s: %w", k, err)
		}
	}
	return body, nil
}

// setForm replaces the first field of that name in a form body (dropping
// later ones) or appends it.
func setForm(body []byte, field, value string) ([]byte, error) {
	pair := url.QueryEscape(field) + "=" + url.QueryEscape(value)
	var parts []string
	if len(body) > 0 {
		parts = strings.Split(string(body), "&")
	}
	out := parts[:0]
	found := false
	for _, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("form field %q: %w", k, err)
		}
		if name == field {
			if found {
				continue
			}
			found = true
			p = pair
		}
		out = append(out, p)
	}
	if !found {
		out = append(out, pair)
	}
	return []byte(strings.Join(out, "&")), nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomAlnum(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b)
}
