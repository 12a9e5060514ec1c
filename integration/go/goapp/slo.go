package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Flags of -mode slo.
var (
	rps         = flag.Float64("rps", 0, "slo mode: requests per second the service sends to its own /work (0 = none; serve only)")
	errorRatio  = flag.Float64("error-ratio", 0.05, "slo mode: fraction of /work requests answered 500")
	latency     = flag.Duration("latency", 5*time.Millisecond, "slo mode: how long an ordinary /work request takes")
	slowRatio   = flag.Float64("slow-ratio", 0, "slo mode: fraction of /work requests that take -slow-latency instead")
	slowLatency = flag.Duration("slow-latency", 400*time.Millisecond, "slo mode: how long a slow /work request takes")
	bufferKB    = flag.Int("buffer-kb", 2049, "slo mode: centre of the app_buffer_kb gauge (odd, so a x1000 instead of x1024 conversion shows)")
)

// crosses reports whether request n (1-based) is one of the ratio*n selected so far:
// exactly floor(n*ratio) of the first n requests are selected, evenly spread, so a
// window of requests holds the ratio to within one request (no sampling noise).
func crosses(n int64, ratio float64) bool {
	return math.Floor(float64(n)*ratio) > math.Floor(float64(n-1)*ratio)
}

// registerSLO serves a request handler instrumented the way client_golang services
// usually are (promhttp middleware), for SLOs computed from the service's own metrics:
//
//	http_requests_total{code, method}                counter (promhttp.InstrumentHandlerCounter)
//	http_request_duration_seconds{code, method}      histogram, prometheus.DefBuckets
//	                                                 (.005 .01 .025 .05 .1 .25 .5 1 2.5 5 10)
//	app_buffer_kb                                    gauge in KiB with no unit metadata (a
//	                                                 legacy name for the units processor):
//	                                                 -buffer-kb + 2*round(256*sin(2πt/30s)),
//	                                                 always odd when -buffer-kb is odd
//	go_* and process_*                               the Go and process collectors
//
// Request n of /work (counted from 1) answers 500 when crosses(n, -error-ratio), and takes
// -slow-latency when crosses(n, -slow-ratio), else -latency. With -rps > 0 the service
// calls its own /work that often over real HTTP (a request per tick, never waiting for
// the previous one), so its metrics carry a known error ratio and latency profile.
func registerSLO(mux *http.ServeMux) {
	registry := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total", Help: "HTTP requests handled, by status code and method.",
	}, []string{"code", "method"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Help: "HTTP request latency.", Buckets: prometheus.DefBuckets,
	}, []string{"code", "method"})
	start := time.Now()
	buffer := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "app_buffer_kb", Help: "Memory held by request buffers, in KiB.",
	}, func() float64 {
		phase := 2 * math.Pi * time.Since(start).Seconds() / 30
		return float64(*bufferKB) + 2*math.Round(256*math.Sin(phase))
	})
	registry.MustRegister(requests, duration, buffer,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var count atomic.Int64
	work := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := count.Add(1)
		if crosses(n, *slowRatio) {
			time.Sleep(*slowLatency)
		} else {
			time.Sleep(*latency)
		}
		if crosses(n, *errorRatio) {
			http.Error(w, "injected failure", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/work", promhttp.InstrumentHandlerDuration(duration, promhttp.InstrumentHandlerCounter(requests, work)))
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{EnableOpenMetrics: true}))
}

// generateTraffic calls http://addr/work rps times per second until the process ends.
func generateTraffic(addr string, rps float64) {
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
	}
	url := "http://" + addr + "/work"
	ticker := time.NewTicker(time.Duration(float64(time.Second) / rps))
	defer ticker.Stop()
	var failures atomic.Int64
	for range ticker.C {
		go func() {
			response, err := client.Get(url)
			if err != nil {
				// Only the first few, so a stopped listener does not flood the log.
				if failures.Add(1) <= 3 {
					log.Printf("traffic: %v", err)
				}
				return
			}
			io.Copy(io.Discard, response.Body)
			response.Body.Close()
		}()
	}
}
