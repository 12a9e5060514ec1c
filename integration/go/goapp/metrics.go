package main

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// registerMetrics serves client_golang metrics on /metrics. Every GET /work observes the
// same values, so after n requests the test knows exactly what to expect:
//
//	app_requests_total{code="200"}     += 1, app_requests_total{code="500"} += 1 every 4th
//	app_request_duration_seconds       observes 0.05, 0.3 and 2 (buckets .1, .5, 1)
//	app_payload_bytes (summary)        observes 100 and 300
func registerMetrics(mux *http.ServeMux) {
	registry := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "app_requests_total", Help: "Requests handled."}, []string{"code"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "app_request_duration_seconds", Help: "Request latency.", Buckets: []float64{0.1, 0.5, 1}})
	payload := prometheus.NewSummary(prometheus.SummaryOpts{Name: "app_payload_bytes", Help: "Payload sizes.", Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01}})
	temperature := prometheus.NewGauge(prometheus.GaugeOpts{Name: "app_temperature_celsius", Help: "A gauge."})
	registry.MustRegister(requests, duration, payload, temperature, prometheus.NewGoCollector())
	temperature.Set(21.5)
	var count atomic.Int64
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		n := count.Add(1)
		requests.WithLabelValues("200").Inc()
		if n%4 == 0 {
			requests.WithLabelValues("500").Inc()
		}
		for _, v := range []float64{0.05, 0.3, 2} {
			duration.Observe(v)
		}
		payload.Observe(100)
		payload.Observe(300)
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{EnableOpenMetrics: true}))
}
