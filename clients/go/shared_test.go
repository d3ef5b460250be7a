package flightbay_test

import (
	"os"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/flight"
)

// SharedQuery is the SQL behind the flight named go_shared; the Java tests read that flight by name and expect
// these rows (x = 0, 1000, ..., 9000 of the test table).
const sharedQuery = "SELECT x, s, ts FROM go_source WHERE x % 1000 = 0 ORDER BY x"

// TestSharedFlight uploads go_source and derives go_shared from it with a named SQL op. With FLIGHTBAY_URI set it
// uses that server (and leaves both flights there for other clients), otherwise a server of its own.
func TestSharedFlight(t *testing.T) {
	ctx, mem := testContext(t), checkedAllocator(t)
	addr := os.Getenv("FLIGHTBAY_URI")
	if addr == "" {
		addr = startServer(t)
	}
	c := connect(t, addr)

	// "replace" moves the name if an earlier run left go_source behind.
	uploadTrips(ctx, t, mem, c, cmdDescriptor(`{"op":"put","name":"go_source","mode":"replace"}`))

	info, got, err := fetch(ctx, mem, c, jsonCmd(t, map[string]any{
		"op": "sql", "query": sharedQuery, "name": "go_shared",
	}))
	if err != nil {
		t.Fatalf("named SQL op: %v", err)
	}
	defer got.Release()
	want := tripsRows(0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000)
	assertTypes(t, "go_shared", got.Schema(), tripsSchema)
	assertRows(t, "go_shared", got, want)
	id := parseInfoMetadata(t, info).ID

	// The name now resolves to the derived flight.
	byName, err := c.GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"go_shared"}})
	if err != nil {
		t.Fatalf("GetFlightInfo(PATH [go_shared]): %v", err)
	}
	if got := parseInfoMetadata(t, byName).ID; got != id {
		t.Fatalf("go_shared names flight %d, want %d", got, id)
	}
}
