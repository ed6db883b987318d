// A small HTTP server on loopback, a goroutine per request (net/http):
// /work?n=N answers "N N!" computed by a recursive function, /slow stays
// three seconds inside one call, /stuck waits on a channel inside one call
// until /release closes it. Prints "listening PORT" once it listens.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

//go:noinline
func factorial(n int) int {
	if n <= 1 {
		return 1
	}
	return n * factorial(n-1)
}

//go:noinline
func slowQuery() string {
	time.Sleep(3 * time.Second)
	return "slow done"
}

var release = make(chan struct{})

//go:noinline
func waitForever() string {
	<-release
	return "released"
}

//go:noinline
func handle(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/slow":
		fmt.Fprintln(w, slowQuery())
		return
	case "/stuck":
		fmt.Fprintln(w, waitForever())
		return
	case "/release":
		close(release)
		fmt.Fprintln(w, "ok")
		return
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	fmt.Fprintf(w, "%d %d\n", n, factorial(n))
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	http.HandleFunc("/", handle)
	if err := http.Serve(ln, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
