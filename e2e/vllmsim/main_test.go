package vllmsim

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package if goroutines of this package outlive the
// tests: every server, engine loop and handler must stop on Close or
// context cancel. Goroutines that are already ending get a short grace
// period (a leak check, not a synchronisation: tests never wait on it).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		var leaked []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			leaked = ownGoroutines()
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n\n%s\n", strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// ownGoroutines returns the stacks of goroutines running this package's
// code, other than the test runner itself.
func ownGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "e2e/vllmsim.") && !strings.Contains(g, "e2e/vllmsim.TestMain") &&
			!strings.Contains(g, "e2e/vllmsim.ownGoroutines") {
			out = append(out, g)
		}
	}
	return out
}
