package server

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// Bounds of the memory of failed commits: entries are a fixed 32-byte
// fingerprint and an event id, so maxFailedWebhooks also bounds the bytes
// (about 200 each with the list and map, 2 MiB in all; ids are held to
// maxFailedIDBytes).
const (
	failedWebhookTTL  = 10 * time.Minute
	maxFailedWebhooks = 10000
	maxFailedIDBytes  = 64
)

// deliveryIDHeaders are the providers' own delivery ids, which stay the
// same when the provider retries. They join the fingerprint when present;
// other header lines do not, since a provider's retry carries a new
// timestamp and signature (Stripe-Signature's t=, webhook-timestamp).
var deliveryIDHeaders = []string{
	"X-GitHub-Delivery", "X-Gitlab-Event-UUID", "X-Shopify-Webhook-Id",
	"Webhook-Id", "Svix-Id", "Idempotency-Key",
}

// failedWebhooks remembers, in memory only (the store has just failed), the
// webhooks whose commit failed after their delivery had started: the app
// may have had one, and its sender was answered 503 and will retry. A later
// webhook with the same fingerprint is delivered marked as a repeat of the
// failed event (Hookrelay-Repeat-Of). Entries expire after
// failedWebhookTTL; the oldest go first past maxFailedWebhooks. A node only
// remembers its own failures: a retry that lands on another node of a
// cluster is not marked.
type failedWebhooks struct {
	mu      sync.Mutex
	order   *list.List                 // *failedWebhook, oldest first
	entries map[[32]byte]*list.Element // by fingerprint
	now     func() time.Time           // time.Now but in tests
}

type failedWebhook struct {
	key     [32]byte
	eventID string
	expires time.Time
}

func newFailedWebhooks() *failedWebhooks {
	return &failedWebhooks{order: list.New(), entries: make(map[[32]byte]*list.Element), now: time.Now}
}

// remember records that ev's commit failed after its delivery started.
func (f *failedWebhooks) remember(ev *store.Event) {
	if len(ev.ID) > maxFailedIDBytes {
		return
	}
	key := webhookFingerprint(ev)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	if el, ok := f.entries[key]; ok {
		f.order.Remove(el)
	}
	f.entries[key] = f.order.PushBack(&failedWebhook{key: key, eventID: ev.ID, expires: f.now().Add(failedWebhookTTL)})
	for f.order.Len() > maxFailedWebhooks {
		f.drop(f.order.Front())
	}
}

// repeatOf returns the id of the failed event ev repeats, or "". A repeat
// is marked once: the entry goes, as the retry now holds the webhook.
func (f *failedWebhooks) repeatOf(ev *store.Event) string {
	f.mu.Lock()
	empty := len(f.entries) == 0
	f.mu.Unlock()
	if empty {
		return "" // the common case costs no hash
	}
	key := webhookFingerprint(ev)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	el, ok := f.entries[key]
	if !ok {
		return ""
	}
	f.drop(el)
	return el.Value.(*failedWebhook).eventID
}

func (f *failedWebhooks) expire() {
	now := f.now()
	for el := f.order.Front(); el != nil && !now.Before(el.Value.(*failedWebhook).expires); el = f.order.Front() {
		f.drop(el)
	}
}

func (f *failedWebhooks) drop(el *list.Element) {
	delete(f.entries, el.Value.(*failedWebhook).key)
	f.order.Remove(el)
}

// webhookFingerprint hashes what makes a webhook the same one sent again:
// its channel, method, path, query, body, and the providers' delivery id
// headers it carries (deliveryIDHeaders). Each part is length-prefixed.
func webhookFingerprint(ev *store.Event) [32]byte {
	h := sha256.New()
	part := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	part(ev.ChannelID)
	part(ev.Method)
	part(ev.Path)
	part(ev.RawQuery)
	for _, name := range deliveryIDHeaders {
		for _, hd := range ev.Headers {
			if strings.EqualFold(hd.Name, name) {
				part(name)
				part(hd.Value)
			}
		}
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(ev.Body)))
	h.Write(n[:])
	h.Write(ev.Body)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
