// Goroutines that nest calls, grow their stacks through deep recursion,
// block on channels and yield (so the scheduler moves them between
// threads), and recover panics thrown through several frames. Every traced
// function counts its own calls; the counts are printed at the end, in a
// fixed order, so the output is the same whether or not ferret watches.
//
// Usage: goroutines GOROUTINES ITERATIONS [crash]  (GOROUTINES even: they
// exchange values in pairs)
// With `crash`, one more goroutine panics through traced frames, unrecovered.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"
)

const (
	fHandle = iota
	fNest
	fLeaf
	fDeep
	fExchange
	fYield
	fGuarded
	fRisky
	fExplode
	fCount
)

var names = [fCount]string{"handle", "nest", "leaf", "deep", "exchange", "yield", "guarded", "risky", "explode"}

var calls [fCount]int64
var recovered int64

// Goroutines whose stack the runtime moved while deep ran: a local's
// address (kept as a plain number, which the copy does not update) changed.
var moved int64

func count(f int) { atomic.AddInt64(&calls[f], 1) }

//go:noinline
func leaf(x int) int {
	count(fLeaf)
	return x*3 + 1
}

//go:noinline
func nest(n, x int) int {
	count(fNest)
	if n == 0 {
		return leaf(x)
	}
	return nest(n-1, x) + 1
}

// deep recurses with a large frame: 40 levels take 20 KiB of stack, well
// past a new goroutine's, so the runtime copies the stack while the outer
// calls are open.
//
//go:noinline
func deep(n int) int {
	count(fDeep)
	var pad [512]byte
	pad[n%len(pad)] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return deep(n-1) + int(pad[n%len(pad)])
}

// exchange blocks until the partner goroutine takes part: the goroutine
// parks, and may resume on another thread.
//
//go:noinline
func exchange(ch chan int, send bool, x int) int {
	count(fExchange)
	if send {
		ch <- x
		return x
	}
	return <-ch
}

//go:noinline
func yield() {
	count(fYield)
	runtime.Gosched()
}

//go:noinline
func explode(x int) int {
	count(fExplode)
	if x%4 == 0 {
		panic(fmt.Sprintf("boom %d", x))
	}
	return x
}

//go:noinline
func risky(x int) int {
	count(fRisky)
	return explode(x) + 1
}

// guarded recovers a panic thrown two traced frames below it.
//
//go:noinline
func guarded(x int) (result int) {
	count(fGuarded)
	defer func() {
		if r := recover(); r != nil {
			atomic.AddInt64(&recovered, 1)
			result = -1
		}
	}()
	return risky(x)
}

//go:noinline
func handle(id, i int, ch chan int, seen *bool) int {
	count(fHandle)
	var local int
	before := uintptr(unsafe.Pointer(&local))
	sum := nest(3, i) + deep(40) + local
	if uintptr(unsafe.Pointer(&local)) != before && !*seen {
		*seen = true
		atomic.AddInt64(&moved, 1)
	}
	sum += exchange(ch, id%2 == 0, i)
	yield()
	return sum + guarded(id+i)
}

func main() {
	goroutines, _ := strconv.Atoi(os.Args[1])
	iterations, _ := strconv.Atoi(os.Args[2])
	crash := len(os.Args) > 3 && os.Args[3] == "crash"
	channels := make([]chan int, (goroutines+1)/2)
	for i := range channels {
		channels[i] = make(chan int)
	}
	var wg sync.WaitGroup
	var total int64
	for id := 0; id < goroutines; id++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			seen := false
			for i := 0; i < iterations; i++ {
				atomic.AddInt64(&total, int64(handle(id, i, channels[id/2], &seen)))
			}
		}(id)
	}
	wg.Wait()
	for f, name := range names {
		fmt.Printf("%s=%d\n", name, calls[f])
	}
	fmt.Printf("recovered=%d stacks_moved=%d total=%d\n", recovered, moved, total)
	if crash {
		// Closed only if risky returns, which it must not: a deferred
		// close ran while the panic unwound and let main return first,
		// exiting 0 before the panic could exit 2.
		done := make(chan struct{})
		go func() {
			risky(0)
			close(done)
		}()
		<-done
	}
}
