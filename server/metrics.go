package server

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hookrelay/hookrelay/server/store"
)

// metrics are the relay's Prometheus metrics, on a registry of its own so
// that several relays in one process (tests) do not collide.
type metrics struct {
	registry         *prometheus.Registry
	eventsReceived   prometheus.Counter
	eventsRejected   *prometheus.CounterVec
	deliveries       *prometheus.CounterVec
	deliveryDuration prometheus.Histogram
	agentsConnected  prometheus.Gauge
	longPolls        prometheus.Gauge
	sseStreams       prometheus.Gauge
	sseSlowReaders   prometheus.Counter
	sseRefused       *prometheus.CounterVec
	commitDuration   prometheus.Histogram
	batchEvents      prometheus.Histogram
	commitFailures   prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		eventsReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookrelay_events_received_total", Help: "Webhooks accepted and committed by ingress.",
		}),
		eventsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookrelay_events_rejected_total", Help: "Webhooks refused by ingress, by reason.",
		}, []string{"reason"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookrelay_deliveries_total", Help: "Delivery attempts, by result (delivered, target_error, agent_gone) and app status class.",
		}, []string{"result", "status"}),
		deliveryDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hookrelay_delivery_duration_seconds", Help: "Time from sending a delivery to the agent until its answer.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		agentsConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookrelay_agents_connected", Help: "Agents connected over the tunnel now.",
		}),
		longPolls: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookrelay_long_polls_waiting", Help: "Event list requests waiting (wait=) for a new event now.",
		}),
		sseStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookrelay_sse_streams", Help: "smee-compatible event streams (GET /h/CHANNEL, Accept: text/event-stream) open now.",
		}),
		sseSlowReaders: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookrelay_sse_slow_readers_dropped_total", Help: "Event streams dropped because their reader fell behind the sse_buffer or stopped reading.",
		}),
		sseRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookrelay_sse_streams_refused_total", Help: "Event streams refused with 429, by cap (channel, address, token).",
		}, []string{"cap"}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hookrelay_store_commit_seconds", Help: "Time the store took to commit a batch of webhooks (group commit: the transaction with its fsync), per batch.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		batchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hookrelay_store_batch_events", Help: "Webhooks committed together in one store transaction (group commit), per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookrelay_store_commit_failures_total", Help: "Batches of webhooks whose commit failed (their senders got 503).",
		}),
	}
	m.registry.MustRegister(m.commitDuration, m.batchEvents, m.commitFailures, m.eventsReceived, m.eventsRejected, m.deliveries, m.deliveryDuration, m.agentsConnected, m.longPolls,
		m.sseStreams, m.sseSlowReaders, m.sseRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeDelivery(d store.Delivery) {
	result, status := "delivered", "none"
	switch {
	case d.Status > 0:
		status = strconv.Itoa(d.Status/100) + "xx"
	case d.Error != "":
		result = "failed"
	}
	m.deliveries.WithLabelValues(result, status).Inc()
	m.deliveryDuration.Observe(d.Duration.Seconds())
}

// observeCommit records one group commit of the store (store.CommitObserver);
// it runs on the store's writer.
func (m *metrics) observeCommit(b store.BatchCommit) {
	if b.Err != nil {
		m.commitFailures.Inc()
		return
	}
	m.commitDuration.Observe(b.Duration.Seconds())
	m.batchEvents.Observe(float64(b.Events))
}
