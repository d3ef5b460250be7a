package flightbay_test

import (
	"context"
	"errors"
	"io"
	"strconv"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const tripsRowsN = 10_000

// checkedAllocator fails the test if any Arrow buffer is still held when it ends.
func checkedAllocator(t *testing.T) *memory.CheckedAllocator {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

// uploadTrips uploads the 10k-row test table to PATH [name] in batches of 4096 rows.
func uploadTrips(ctx context.Context, t *testing.T, mem memory.Allocator, c flight.Client, desc *flight.FlightDescriptor) putResult {
	t.Helper()
	recs := tripsBatches(mem, tripsRowsN, 4096)
	defer releaseAll(recs)
	put, err := upload(ctx, c, desc, recs)
	if err != nil {
		t.Fatalf("DoPut: %v", err)
	}
	if put.NumRows != tripsRowsN || put.ID == 0 {
		t.Fatalf("PutResult %+v, want a non-zero id and %d rows", put, tripsRowsN)
	}
	return put
}

func TestUploadListFetch(t *testing.T) {
	ctx, mem := testContext(t), checkedAllocator(t)
	c := connect(t, startServer(t))

	put := uploadTrips(ctx, t, mem, c, pathDescriptor("go_trips"))
	if put.Name != "go_trips" || put.Namespace != "default" || put.NumBytes <= 0 {
		t.Fatalf("PutResult %+v, want name go_trips in namespace default with a byte count", put)
	}

	flights, err := c.ListFlights(ctx, &flight.Criteria{})
	if err != nil {
		t.Fatal(err)
	}
	var listed []*flight.FlightInfo
	for {
		info, err := flights.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("ListFlights: %v", err)
		}
		listed = append(listed, info)
	}
	if len(listed) != 1 {
		t.Fatalf("ListFlights returned %d flights, want 1", len(listed))
	}
	if got := listed[0].FlightDescriptor.GetPath(); len(got) != 2 || got[0] != "default" || got[1] != "go_trips" {
		t.Errorf("listed descriptor path %q, want [default go_trips]", got)
	}
	if listed[0].TotalRecords != tripsRowsN {
		t.Errorf("listed total_records %d, want %d", listed[0].TotalRecords, tripsRowsN)
	}
	if id := parseInfoMetadata(t, listed[0]).ID; id != put.ID {
		t.Errorf("listed id %d, want %d", id, put.ID)
	}

	// Fetch by id and by name: the exact schema and every value come back.
	for _, desc := range []*flight.FlightDescriptor{
		pathDescriptor(strconv.FormatUint(put.ID, 10)),
		pathDescriptor("go_trips"),
	} {
		info, got, err := fetch(ctx, mem, c, desc)
		if err != nil {
			t.Fatalf("fetching %v: %v", desc.Path, err)
		}
		if info.TotalRecords != tripsRowsN {
			t.Errorf("total_records %d, want %d", info.TotalRecords, tripsRowsN)
		}
		if !got.Schema().Equal(tripsSchema) {
			t.Errorf("schema\n%s\nwant\n%s", got.Schema(), tripsSchema)
		}
		want := tripsTable(mem, tripsRowsN)
		if !array.TableEqual(got, want) {
			assertRows(t, "DoGet "+desc.Path[0], got, rows(want))
			t.Errorf("DoGet %v: tables differ", desc.Path)
		}
		want.Release()
		got.Release()
	}
}

// TestLargeBatchFitsDefaultReceiveLimit uploads one 8 MB batch and reads it back with grpc-go's default 4 MiB
// receive limit: the server must split what it sends.
func TestLargeBatchFitsDefaultReceiveLimit(t *testing.T) {
	ctx, mem := testContext(t), checkedAllocator(t)
	c := connect(t, startServer(t))

	const n = 1_000_000
	b := array.NewInt64Builder(mem)
	for i := 0; i < n; i++ {
		b.Append(int64(i) * 3)
	}
	col := b.NewArray()
	b.Release()
	defer col.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.PrimitiveTypes.Int64, Nullable: true}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{col}, n)
	defer rec.Release()

	put, err := upload(ctx, c, pathDescriptor("go_big"), []arrow.RecordBatch{rec})
	if err != nil {
		t.Fatalf("DoPut of one 8 MB batch: %v", err)
	}
	if put.NumRows != n {
		t.Fatalf("PutResult %+v, want %d rows", put, n)
	}
	_, got, err := fetch(ctx, mem, c, pathDescriptor("go_big"))
	if err != nil {
		t.Fatalf("DoGet with the default 4 MiB receive limit: %v", err)
	}
	defer got.Release()
	want := arrow.NewChunked(col.DataType(), []arrow.Array{col})
	defer want.Release()
	if got.NumRows() != n || !array.ChunkedEqual(got.Column(0).Data(), want) {
		t.Fatalf("got %d rows back, not equal to the %d uploaded", got.NumRows(), n)
	}
}

func TestSQLCount(t *testing.T) {
	ctx, mem := testContext(t), checkedAllocator(t)
	c := connect(t, startServer(t))
	uploadTrips(ctx, t, mem, c, pathDescriptor("go_trips"))

	info, got, err := fetch(ctx, mem, c, cmdDescriptor("SELECT count(*) AS n FROM go_trips"))
	if err != nil {
		t.Fatalf("SQL CMD: %v", err)
	}
	defer got.Release()
	if got.NumCols() != 1 || got.Schema().Field(0).Name != "n" || got.Schema().Field(0).Type.ID() != arrow.INT64 {
		t.Fatalf("schema %s, want one int64 column n", got.Schema())
	}
	assertRows(t, "count(*)", got, []string{strconv.Itoa(tripsRowsN)})
	if meta := parseInfoMetadata(t, info); meta.ID == 0 || meta.Lineage.Op != "sql" {
		t.Errorf("app_metadata %s, want a new flight id and lineage op sql", info.AppMetadata)
	}
}

func TestSQLFilterBySourceID(t *testing.T) {
	ctx, mem := testContext(t), checkedAllocator(t)
	c := connect(t, startServer(t))
	put := uploadTrips(ctx, t, mem, c, pathDescriptor("go_trips"))

	// f<id> names a flight by id in SQL.
	query := "SELECT x, s, ts FROM f" + strconv.FormatUint(put.ID, 10) + " WHERE x >= 9995 ORDER BY x"
	_, got, err := fetch(ctx, mem, c, cmdDescriptor(query))
	if err != nil {
		t.Fatalf("SQL CMD %q: %v", query, err)
	}
	defer got.Release()
	assertTypes(t, query, got.Schema(), tripsSchema)
	assertRows(t, query, got, tripsRows(9995, 9996, 9997, 9998, 9999))
}

func TestSortByOp(t *testing.T) {
	ctx, mem := testContext(t), checkedAllocator(t)
	c := connect(t, startServer(t))
	put := uploadTrips(ctx, t, mem, c, pathDescriptor("go_trips"))

	info, got, err := fetch(ctx, mem, c, jsonCmd(t, map[string]any{
		"op": "sort_by", "source": put.ID, "keys": [][]string{{"x", "descending"}},
	}))
	if err != nil {
		t.Fatalf("sort_by: %v", err)
	}
	defer got.Release()
	if !got.Schema().Equal(tripsSchema) {
		t.Errorf("sort_by schema\n%s\nwant\n%s", got.Schema(), tripsSchema)
	}
	want := make([]int, tripsRowsN)
	for i := range want {
		want[i] = tripsRowsN - 1 - i
	}
	assertRows(t, "sort_by x descending", got, tripsRows(want...))
	meta := parseInfoMetadata(t, info)
	if meta.ID == put.ID || meta.Lineage.Op != "sort_by" || len(meta.Lineage.Inputs) != 1 || meta.Lineage.Inputs[0] != put.ID {
		t.Errorf("app_metadata %s, want a new flight derived by sort_by from %d", info.AppMetadata, put.ID)
	}

	// The derived flight is stored: PATH [id] returns it again without recomputing.
	_, again, err := fetch(ctx, mem, c, pathDescriptor(strconv.FormatUint(meta.ID, 10)))
	if err != nil {
		t.Fatalf("fetching derived flight %d: %v", meta.ID, err)
	}
	defer again.Release()
	assertRows(t, "derived flight by id", again, tripsRows(want...))
}

func TestTakeOp(t *testing.T) {
	ctx, mem := testContext(t), checkedAllocator(t)
	c := connect(t, startServer(t))
	uploadTrips(ctx, t, mem, c, pathDescriptor("go_trips"))

	indices := []int{9999, 0, 7, 5000, 7}
	_, got, err := fetch(ctx, mem, c, jsonCmd(t, map[string]any{
		"op": "take", "source": "go_trips", "indices": indices,
	}))
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	defer got.Release()
	assertRows(t, "take", got, tripsRows(indices...))
}

func TestActions(t *testing.T) {
	ctx, mem := testContext(t), checkedAllocator(t)
	c := connect(t, startServer(t))
	uploadTrips(ctx, t, mem, c, pathDescriptor("go_trips"))

	stream, err := c.ListActions(ctx, &flight.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]string{}
	for {
		a, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("ListActions: %v", err)
		}
		actions[a.Type] = a.Description
	}
	for _, want := range []string{"health", "stats", "drop", "lineage"} {
		if actions[want] == "" {
			t.Errorf("ListActions has no %q with a description: %v", want, actions)
		}
	}

	health, err := doAction(ctx, c, "health", map[string]any{})
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	if health["status"] != "ok" {
		t.Errorf("health returned %v, want status ok", health)
	}
	if _, err := doAction(ctx, c, "stats", map[string]any{}); err != nil {
		t.Fatalf("stats: %v", err)
	}

	// drop by name, then the name is gone.
	if _, err := doAction(ctx, c, "drop", map[string]any{"name": "go_trips"}); err != nil {
		t.Fatalf("drop: %v", err)
	}
	if _, err := c.GetFlightInfo(ctx, pathDescriptor("go_trips")); status.Code(err) != codes.NotFound {
		t.Errorf("GetFlightInfo after drop: %v, want NotFound", err)
	}
}

func TestErrorCodes(t *testing.T) {
	ctx, mem := testContext(t), checkedAllocator(t)
	c := connect(t, startServer(t))

	if _, err := c.GetFlightInfo(ctx, pathDescriptor("999")); status.Code(err) != codes.NotFound {
		t.Errorf("GetFlightInfo(PATH [\"999\"]): %v, want NotFound", err)
	}
	if _, err := readTicket(ctx, mem, c, &flight.Ticket{Ticket: []byte("999")}); status.Code(err) != codes.NotFound {
		t.Errorf("DoGet(ticket 999): %v, want NotFound", err)
	}
	if _, err := doAction(ctx, c, "drop", map[string]any{"id": 999}); status.Code(err) != codes.NotFound {
		t.Errorf("drop {\"id\": 999}: %v, want NotFound", err)
	}
	if _, err := doAction(ctx, c, "health", map[string]any{"unexpected": 1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("health with an unknown key: %v, want InvalidArgument", err)
	}
	if _, err := c.GetFlightInfo(ctx, cmdDescriptor(`{"op":"explode","source":1}`)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown JSON op: %v, want InvalidArgument", err)
	}
}

// TestPartitionEndpoints asks for a flight as 4 row-range endpoints and reads them in order, as a parallel reader would.
func TestPartitionEndpoints(t *testing.T) {
	ctx, mem := testContext(t), checkedAllocator(t)
	c := connect(t, startServer(t))
	put := uploadTrips(ctx, t, mem, c, pathDescriptor("go_trips"))

	info, got, err := fetch(ctx, mem, c, jsonCmd(t, map[string]any{"op": "partition", "source": put.ID, "parts": 4}))
	if err != nil {
		t.Fatalf("partition: %v", err)
	}
	defer got.Release()
	if len(info.Endpoint) != 4 {
		t.Fatalf("got %d endpoints, want 4", len(info.Endpoint))
	}
	for i, ep := range info.Endpoint {
		if len(ep.Location) != 0 {
			t.Errorf("endpoint %d has locations %v; want none (same connection)", i, ep.Location)
		}
	}
	if id := parseInfoMetadata(t, info).ID; id != put.ID {
		t.Errorf("partition described flight %d, want the source %d (no new flight)", id, put.ID)
	}
	want := make([]int, tripsRowsN)
	for i := range want {
		want[i] = i
	}
	assertRows(t, "4 endpoints in order", got, tripsRows(want...))
}
