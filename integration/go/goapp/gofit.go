package main

import (
	"flag"
	"fmt"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	fitChurn  = flag.Bool("churn", false, "gofit mode: start with allocation churn on (a GC-heavy service)")
	fitLiveMB = flag.Int("live-mb", 32, "gofit mode: live heap kept while churning, in MiB")
	fitBurn   = flag.Int("burn", 0, "gofit mode: goroutines spinning on the CPU from the start")
)

// registerGofit serves, on /metrics, client_golang's Go collector with the runtime/metrics
// the gofit processor reads beyond the defaults (go_gc_gogc_percent,
// go_gc_gomemlimit_bytes and go_sched_gomaxprocs_threads are defaults): the CPU classes
// (go_cpu_classes_*_cpu_seconds_total) and the scheduling latency histogram
// (go_sched_latencies_seconds). Load, changeable at run time so a finding can clear:
//
//	-churn / GET /load?churn=1|0   allocate garbage in a loop over a -live-mb live heap,
//	                               so the GC runs all the time (more with a low GOGC)
//	-burn N / GET /load?burn=N     N goroutines spinning on the CPU
func registerGofit(mux *http.ServeMux) {
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.MetricsGC,
		collectors.MetricsScheduler,
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/cpu/classes/.*`)},
	)))
	var churn atomic.Bool
	var burners atomic.Int64
	churn.Store(*fitChurn)
	go churnLoop(&churn, *fitLiveMB)
	setBurners(&burners, int64(*fitBurn))
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/load", func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("churn"); v != "" {
			churn.Store(v == "1")
		}
		if v := r.URL.Query().Get("burn"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				http.Error(w, "burn must be a count", http.StatusBadRequest)
				return
			}
			setBurners(&burners, int64(n))
		}
		fmt.Fprintf(w, "churn=%v burn=%d gomaxprocs=%d\n", churn.Load(), burners.Load(), runtime.GOMAXPROCS(0))
	})
}

// node is a small pointer-holding object: a live heap of many of them is expensive to
// mark, which is what makes a GC costly.
type node struct {
	next    *node
	payload [6]int64
}

// liveHeap and garbage keep allocations reachable so the compiler cannot drop them.
var (
	liveHeap []*node
	garbage  *node
)

func churnLoop(on *atomic.Bool, liveMB int) {
	// 64 bytes a node.
	liveHeap = make([]*node, liveMB<<14)
	for i := range liveHeap {
		liveHeap[i] = &node{}
		if i > 0 {
			liveHeap[i].next = liveHeap[i-1]
		}
	}
	for i := 0; ; i++ {
		if !on.Load() {
			// Idle: no allocation, so the GC has nothing to do.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// Replace a live node and allocate short-lived garbage besides.
		j := i % len(liveHeap)
		liveHeap[j] = &node{next: liveHeap[(j+1)%len(liveHeap)]}
		for k := 0; k < 16; k++ {
			garbage = &node{next: garbage}
			if k == 15 {
				garbage = nil
			}
		}
	}
}

// setBurners starts or stops spinning goroutines until n run.
func setBurners(running *atomic.Int64, n int64) {
	for {
		current := running.Load()
		if current == n {
			return
		}
		if current < n {
			if running.CompareAndSwap(current, current+1) {
				id := current
				go func() {
					x := 0
					for running.Load() > id {
						for k := 0; k < 1_000_000; k++ {
							x += k
						}
					}
					_ = x
				}()
			}
		} else {
			running.CompareAndSwap(current, n)
			return
		}
	}
}
