// Where a Go call's time goes, with known answers. `split`: main.work
// computes for 300 ms of CPU, sleeps 300 ms (time.Sleep parks the
// goroutine), then waits about 300 ms for a sync.Mutex another goroutine
// holds; GOMAXPROCS is 4 on fewer cores, so the goroutine moves between
// threads. `contend`: GOMAXPROCS 1 and two goroutines each computing 300 ms
// in main.spin, so each waits for the one P about as long as it runs.
// `live`: GOMAXPROCS 1, one goroutine computing without end while the main
// one calls main.nap (a 100 ms time.Sleep) again and again, on the same P
// and so mostly the same thread: a nap is blocked time, though its thread
// computes all along; it prints `ready` first, then runs until its stdin
// closes and says how many naps it took.
// The output is the same whether or not ferret watches.
//
// Usage: gosplit split|contend|live
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

const stretch = 300 * time.Millisecond

// The process's CPU time (every thread): while work computes, the other
// goroutines sleep, so this grows with work's own CPU time wherever the
// scheduler runs it.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var sink uint64

//go:noinline
func burn(n int) {
	x := sink
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	sink = x
}

//go:noinline
func work(mu *sync.Mutex, held chan struct{}) {
	start := processCPU()
	for processCPU()-start < stretch {
		burn(100000)
	}
	time.Sleep(stretch)
	go func() {
		mu.Lock()
		close(held)
		time.Sleep(stretch)
		mu.Unlock()
	}()
	<-held
	mu.Lock()
	mu.Unlock()
}

//go:noinline
func spin(n int, done *sync.WaitGroup) {
	for i := 0; i < n; i++ {
		burn(100000)
	}
	done.Done()
}

//go:noinline
func nap() {
	time.Sleep(stretch / 3)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gosplit split|contend|live")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "split":
		runtime.GOMAXPROCS(4)
		var mu sync.Mutex
		work(&mu, make(chan struct{}))
		fmt.Println("split done")
	case "contend":
		runtime.GOMAXPROCS(1)
		// How many bursts make 300 ms of CPU, measured alone.
		start, bursts := processCPU(), 0
		for processCPU()-start < stretch/4 {
			burn(100000)
			bursts++
		}
		var done sync.WaitGroup
		done.Add(2)
		go spin(bursts*4, &done)
		go spin(bursts*4, &done)
		done.Wait()
		fmt.Println("contend done")
	case "live":
		runtime.GOMAXPROCS(1)
		go func() {
			for {
				burn(100000)
			}
		}()
		closed := make(chan struct{})
		go func() {
			io.Copy(io.Discard, os.Stdin)
			close(closed)
		}()
		fmt.Println("ready")
		naps := 0
		for {
			select {
			case <-closed:
				fmt.Println("live done", naps > 0)
				return
			default:
			}
			nap()
			naps++
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: gosplit split|contend|live")
		os.Exit(2)
	}
}
