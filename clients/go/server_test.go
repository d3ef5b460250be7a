package flightbay_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// serverBin is the flightbay binary the tests start.
func serverBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("FLIGHTBAY_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", "target", "ci", "flightbay")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("flightbay binary not found at %s (set FLIGHTBAY_BIN or run `cargo build --profile ci`): %v", bin, err)
	}
	return bin
}

// startServer runs flightbay on 127.0.0.1 with an ephemeral port and returns its "host:port". The server is stopped
// and its data directory removed when the test ends; on failure its log is printed.
func startServer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(serverBin(t),
		"--host", "127.0.0.1", "--port", "0", "--http-port", "off",
		"--ready-file", ready,
		"--data-dir", filepath.Join(dir, "data"),
		"--memory-limit", "1GiB")
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting flightbay: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // fails only if the process already exited
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill() // last resort; the Wait goroutine reaps it
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			if log, err := os.ReadFile(logPath); err == nil {
				t.Logf("flightbay log:\n%s", log)
			}
		}
	})

	deadline := time.After(30 * time.Second)
	for {
		// flightbay writes the file by rename, so it is complete once it exists. The first line is the Flight
		// address (a second one, the HTTP listener's, appears when that is on).
		if b, err := os.ReadFile(ready); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			return strings.TrimSpace(first)
		}
		select {
		case err := <-exited:
			exited <- err // let the cleanup see it too
			log, _ := os.ReadFile(logPath)
			t.Fatalf("flightbay exited before it was ready (%v):\n%s", err, log)
		case <-deadline:
			t.Fatal("flightbay did not write its ready file within 30s")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// connect dials addr with the stock client and grpc-go's default limits (4 MiB receive), on purpose: flightbay's
// messages must fit them without client tuning.
func connect(t *testing.T, addr string) flight.Client {
	t.Helper()
	addr = strings.TrimPrefix(addr, "grpc://")
	addr = strings.TrimPrefix(addr, "grpc+tcp://")
	c, err := flight.NewClientWithMiddleware(addr, nil, nil,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testContext is a context that ends with the test or after a minute, whichever comes first.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
