// Package flightbay holds the Go round-trip tests for a flightbay server, written against the stock
// arrow-go Flight client (github.com/apache/arrow-go/v18/arrow/flight) with no flightbay-specific code.
//
// The tests start the real server binary: FLIGHTBAY_BIN names it (default ../../target/ci/flightbay, relative to
// this directory). TestSharedFlight instead uses an already running server when FLIGHTBAY_URI
// ("grpc://host:port" or "host:port") is set, so that a client in another language can read the flight it names.
//
//	cd clients/go && go test ./...
package flightbay
