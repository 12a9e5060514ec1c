// goapp is the Go service the oxcol integration tests scrape. One binary, one behaviour
// per -mode, all serving net/http/pprof on -addr:
//
//	leak    every GET /work starts a goroutine blocked forever in a select without
//	        ctx.Done() (the Scenario 2 bug), in leakyHandler.
//	stable  -stable N goroutines parked at start, never more; /work does nothing lasting.
//	burst   every GET /work starts -burst N goroutines that sleep -burst-for and exit.
//	metrics client_golang metrics (counter, histogram, summary) on /metrics; /work
//	        observes a fixed, known set of values (see registerMetrics).
//	slo     /work instrumented with promhttp (http_requests_total{code,method},
//	        http_request_duration_seconds) with a set error ratio and latency, plus a
//	        KiB gauge; -rps N makes the service call its own /work N times a second
//	        (see registerSLO in slo.go).
//	gofit   client_golang's Go collector with the CPU-class and scheduling-latency
//	        runtime metrics, and load switchable at run time: allocation churn (GC) and
//	        CPU spinners (see registerGofit in gofit.go).
//
// Every mode also serves /numgoroutine (runtime.NumGoroutine() as text), so a test can
// compare oxcol's count with the service's own.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"runtime"
	"strconv"
	"time"
)

var (
	addr     = flag.String("addr", "127.0.0.1:6060", "listen address")
	mode     = flag.String("mode", "leak", "leak | stable | burst | metrics | slo | gofit")
	stableN  = flag.Int("stable", 200, "stable mode: goroutines parked at start")
	burstN   = flag.Int("burst", 100, "burst mode: goroutines per /work request")
	burstFor = flag.Duration("burst-for", 500*time.Millisecond, "burst mode: how long each burst goroutine lives")
	paths    = flag.Int("paths", 0, "bench: also serve everything under /p/<i>/ for i < paths (100 targets from one process)")
)

// pending is never read by anyone: a leaked goroutine waits on it forever.
var pending = make(chan struct{})

// leakyHandler answers at once but leaves a goroutine behind that waits for a result
// nobody sends, and does not watch the request context.
func leakyHandler(w http.ResponseWriter, r *http.Request) {
	result := make(chan int)
	go waitForResult(result)
	fmt.Fprintln(w, "ok")
}

func waitForResult(result chan int) {
	select {
	case <-result:
	case <-pending:
	}
}

func parkForever(stop chan struct{}) { <-stop }

func burstHandler(w http.ResponseWriter, r *http.Request) {
	for i := 0; i < *burstN; i++ {
		go burstWorker(*burstFor)
	}
	fmt.Fprintln(w, "ok")
}

func burstWorker(d time.Duration) { time.Sleep(d) }

func main() {
	flag.Parse()
	mux := http.DefaultServeMux
	mux.HandleFunc("/numgoroutine", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, strconv.Itoa(runtime.NumGoroutine()))
	})
	switch *mode {
	case "leak":
		mux.HandleFunc("/work", leakyHandler)
	case "stable":
		stop := make(chan struct{})
		for i := 0; i < *stableN; i++ {
			go parkForever(stop)
		}
		mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	case "burst":
		mux.HandleFunc("/work", burstHandler)
	case "metrics":
		registerMetrics(mux)
	case "slo":
		registerSLO(mux)
	case "gofit":
		registerGofit(mux)
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
	for i := 0; i < *paths; i++ {
		prefix := fmt.Sprintf("/p/%d", i)
		mux.Handle(prefix+"/", http.StripPrefix(prefix, http.HandlerFunc(forward)))
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// The tests read this line to know the service is up.
	fmt.Printf("listening on %s\n", listener.Addr())
	if *mode == "slo" && *rps > 0 {
		go generateTraffic(listener.Addr().String(), *rps)
	}
	log.Fatal(http.Serve(listener, mux))
}

func forward(w http.ResponseWriter, r *http.Request) { http.DefaultServeMux.ServeHTTP(w, r) }
