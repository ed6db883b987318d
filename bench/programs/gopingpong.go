// pingpong.c for goroutines: two goroutines on GOMAXPROCS=1 passing a value
// back and forth through two unbuffered channels. Every round each parks
// once in a channel receive and is readied by the other's send, so the one
// P switches goroutines twice a round (with no system call: this is the
// runtime's own hand-off, the cost ferret's Go split adds to). Each
// goroutine calls the traced `main.join` once at its start, so ferret keeps
// its state; nothing is traced in the loop itself.
//
// It ping-pongs for WARMUP_MS first (time for ferret's overhead budget to
// act), then for MEASURE_MS, and reports the two apart.
//
// usage: gopingpong WARMUP_MS MEASURE_MS
// prints: rounds N ns_per_round X switches S warmup_rounds W
// warmup_ns_per_round Y (N, X: the measured part; S = 2 N, the parks, by
// construction; W, Y: the warm-up)
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

//go:noinline
func join() int { return len(os.Args) }

var ping, pong = make(chan int), make(chan int)

func other() {
	join()
	for v := range ping {
		pong <- v + 1
	}
	close(pong)
}

// pingPong passes the value back and forth until `until`, checking the
// clock every 256 rounds, and returns the rounds done.
func pingPong(until time.Time) int {
	rounds := 0
	for v := 0; ; {
		for i := 0; i < 256; i++ {
			ping <- v
			v = <-pong
		}
		rounds += 256
		if !time.Now().Before(until) {
			return rounds
		}
	}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gopingpong WARMUP_MS MEASURE_MS")
		os.Exit(2)
	}
	warmup, err1 := strconv.Atoi(os.Args[1])
	measure, err2 := strconv.Atoi(os.Args[2])
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "gopingpong: WARMUP_MS and MEASURE_MS are milliseconds")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1)
	join()
	go other()
	begin := time.Now()
	warm := pingPong(begin.Add(time.Duration(warmup) * time.Millisecond))
	start := time.Now()
	rounds := pingPong(start.Add(time.Duration(measure) * time.Millisecond))
	took := time.Since(start)
	close(ping)
	<-pong
	fmt.Printf("rounds %d ns_per_round %.1f switches %d warmup_rounds %d warmup_ns_per_round %.1f\n",
		rounds, float64(took.Nanoseconds())/float64(rounds), 2*rounds,
		warm, float64(start.Sub(begin).Nanoseconds())/float64(warm))
}
