// tight.c for Go: a ~1 ns function called in a tight loop on one goroutine
// locked to its thread, timed around the loop only (see tight.c).
//
// usage: tight-go CALLS [WARMUP_MS]
// Prints `calls N ns_per_call X cpu_ns_per_call Y`: X is wall time, Y the
// thread's CPU time (user + kernel, which includes the uprobe traps and the
// BPF programs they run).
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

//go:noinline
func benchFn(x int) int { return x + 1 }

// threadCPU is CLOCK_THREAD_CPUTIME_ID, in seconds.
func threadCPU() float64 {
	var ts syscall.Timespec
	const clockThreadCPUTimeID = 3
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func main() {
	runtime.LockOSThread()
	calls, _ := strconv.Atoi(os.Args[1])
	warmupMs := 0
	if len(os.Args) > 2 {
		warmupMs, _ = strconv.Atoi(os.Args[2])
	}
	v := 0
	for end := time.Now().Add(time.Duration(warmupMs) * time.Millisecond); time.Now().Before(end); {
		for i := 0; i < 100; i++ {
			v = benchFn(v)
		}
	}
	wall, cpu := time.Now(), threadCPU()
	for i := 0; i < calls; i++ {
		v = benchFn(v)
	}
	cpuS := threadCPU() - cpu
	wallS := time.Since(wall).Seconds()
	fmt.Printf("calls %d ns_per_call %.3f cpu_ns_per_call %.3f result %d\n", calls,
		wallS*1e9/float64(calls), cpuS*1e9/float64(calls), v)
}
