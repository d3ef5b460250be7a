package flightbay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// tripsSchema is the schema of the test table: int64, utf8 (with nulls) and timestamp[us, UTC].
var tripsSchema = arrow.NewSchema([]arrow.Field{
	{Name: "x", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
}, nil)

// Row i of the test table is x = i, s = "row-<i>" (null when i % 10 == 7) and ts = tsBase + i seconds.
// The Java tests compute the same rows.
const tsBase = int64(1_700_000_000_000_000) // 2023-11-14T22:13:20Z in microseconds

// tripsBatches builds rows [0, n) of the test table in batches of at most batchRows rows.
func tripsBatches(mem memory.Allocator, n, batchRows int) []arrow.RecordBatch {
	b := array.NewRecordBuilder(mem, tripsSchema)
	defer b.Release()
	xs := b.Field(0).(*array.Int64Builder)
	ss := b.Field(1).(*array.StringBuilder)
	ts := b.Field(2).(*array.TimestampBuilder)
	var out []arrow.RecordBatch
	for i := 0; i < n; i++ {
		xs.Append(int64(i))
		if i%10 == 7 {
			ss.AppendNull()
		} else {
			ss.Append(fmt.Sprintf("row-%d", i))
		}
		ts.Append(arrow.Timestamp(tsBase + int64(i)*1_000_000))
		if (i+1)%batchRows == 0 || i == n-1 {
			out = append(out, b.NewRecordBatch())
		}
	}
	return out
}

// tripsTable is rows [0, n) of the test table as one table.
func tripsTable(mem memory.Allocator, n int) arrow.Table {
	recs := tripsBatches(mem, n, n)
	defer releaseAll(recs)
	return array.NewTableFromRecords(tripsSchema, recs)
}

func releaseAll(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

// putResult is the JSON flightbay returns in DoPut's one PutResult.app_metadata.
type putResult struct {
	ID        uint64 `json:"id"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	NumRows   int64  `json:"num_rows"`
	NumBytes  int64  `json:"num_bytes"`
}

// upload streams recs to desc with DoPut and decodes the one PutResult.
func upload(ctx context.Context, c flight.Client, desc *flight.FlightDescriptor, recs []arrow.RecordBatch) (putResult, error) {
	var res putResult
	stream, err := c.DoPut(ctx)
	if err != nil {
		return res, err
	}
	w := flight.NewRecordWriter(stream, ipc.WithSchema(recs[0].Schema()))
	w.SetFlightDescriptor(desc)
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			return res, fmt.Errorf("writing a batch: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return res, err
	}
	if err := stream.CloseSend(); err != nil {
		return res, err
	}
	var metas [][]byte
	for {
		put, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, err
		}
		metas = append(metas, put.AppMetadata)
	}
	if len(metas) != 1 {
		return res, fmt.Errorf("got %d PutResults, want 1", len(metas))
	}
	if err := json.Unmarshal(metas[0], &res); err != nil {
		return res, fmt.Errorf("PutResult.app_metadata %q: %w", metas[0], err)
	}
	return res, nil
}

// fetch runs GetFlightInfo on desc, then DoGet on every endpoint in order, and returns the info and the rows as one
// table. It checks that each stream's schema equals the FlightInfo schema.
func fetch(ctx context.Context, mem memory.Allocator, c flight.Client, desc *flight.FlightDescriptor) (*flight.FlightInfo, arrow.Table, error) {
	info, err := c.GetFlightInfo(ctx, desc)
	if err != nil {
		return nil, nil, err
	}
	schema, err := flight.DeserializeSchema(info.Schema, mem)
	if err != nil {
		return nil, nil, fmt.Errorf("FlightInfo schema: %w", err)
	}
	var recs []arrow.RecordBatch
	defer func() { releaseAll(recs) }()
	for i, ep := range info.Endpoint {
		got, err := readTicket(ctx, mem, c, ep.Ticket)
		recs = append(recs, got...)
		if err != nil {
			return nil, nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
		for _, rec := range got {
			if !rec.Schema().Equal(schema) {
				return nil, nil, fmt.Errorf("endpoint %d streams schema\n%s\nbut FlightInfo says\n%s", i, rec.Schema(), schema)
			}
		}
	}
	return info, array.NewTableFromRecords(schema, recs), nil
}

// readTicket reads one DoGet stream to the end.
func readTicket(ctx context.Context, mem memory.Allocator, c flight.Client, ticket *flight.Ticket) ([]arrow.RecordBatch, error) {
	stream, err := c.DoGet(ctx, ticket)
	if err != nil {
		return nil, err
	}
	r, err := flight.NewRecordReader(stream, ipc.WithAllocator(mem))
	if err != nil {
		return nil, err
	}
	defer r.Release()
	var recs []arrow.RecordBatch
	for r.Next() {
		rec := r.RecordBatch()
		rec.Retain()
		recs = append(recs, rec)
	}
	return recs, r.Err()
}

// doAction runs a custom action with a JSON body and decodes its one JSON result.
func doAction(ctx context.Context, c flight.Client, kind string, body any) (map[string]any, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	stream, err := c.DoAction(ctx, &flight.Action{Type: kind, Body: b})
	if err != nil {
		return nil, err
	}
	var results [][]byte
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		results = append(results, res.Body)
	}
	if len(results) != 1 {
		return nil, fmt.Errorf("action %s returned %d results, want 1", kind, len(results))
	}
	var out map[string]any
	if err := json.Unmarshal(results[0], &out); err != nil {
		return nil, fmt.Errorf("action %s result %q: %w", kind, results[0], err)
	}
	return out, nil
}

func pathDescriptor(path ...string) *flight.FlightDescriptor {
	return &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: path}
}

func cmdDescriptor(cmd string) *flight.FlightDescriptor {
	return &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(cmd)}
}

// jsonCmd is a CMD descriptor holding a JSON op.
func jsonCmd(t *testing.T, op map[string]any) *flight.FlightDescriptor {
	t.Helper()
	b, err := json.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	return cmdDescriptor(string(b))
}

// infoMetadata is the part of FlightInfo.app_metadata the tests read.
type infoMetadata struct {
	ID      uint64   `json:"id"`
	Name    *string  `json:"name"`
	Names   []string `json:"names"`
	Lineage struct {
		Op     string   `json:"op"`
		Inputs []uint64 `json:"inputs"`
	} `json:"lineage"`
}

func parseInfoMetadata(t *testing.T, info *flight.FlightInfo) infoMetadata {
	t.Helper()
	var m infoMetadata
	if err := json.Unmarshal(info.AppMetadata, &m); err != nil {
		t.Fatalf("FlightInfo.app_metadata %q: %v", info.AppMetadata, err)
	}
	return m
}

// rows renders a table as one "a | b | c" line per row, for readable comparisons.
func rows(tbl arrow.Table) []string {
	out := make([]string, tbl.NumRows())
	for c := 0; c < int(tbl.NumCols()); c++ {
		row := 0
		for _, chunk := range tbl.Column(c).Data().Chunks() {
			for i := 0; i < chunk.Len(); i++ {
				if c > 0 {
					out[row] += " | "
				}
				out[row] += chunk.ValueStr(i)
				row++
			}
		}
	}
	return out
}

// tripsRows renders rows of the test table (see tripsBatches) the way rows does.
func tripsRows(indices ...int) []string {
	tbl := tripsTable(memory.NewGoAllocator(), maxIndex(indices)+1)
	defer tbl.Release()
	all := rows(tbl)
	out := make([]string, len(indices))
	for i, idx := range indices {
		out[i] = all[idx]
	}
	return out
}

func maxIndex(indices []int) int {
	m := 0
	for _, i := range indices {
		m = max(m, i)
	}
	return m
}

// assertRows fails the test with the first differing row.
func assertRows(t *testing.T, what string, got arrow.Table, want []string) {
	t.Helper()
	g := rows(got)
	for i := 0; i < min(len(g), len(want)); i++ {
		if g[i] != want[i] {
			t.Fatalf("%s: row %d is %q, want %q", what, i, g[i], want[i])
		}
	}
	if len(g) != len(want) {
		t.Fatalf("%s: got %d rows, want %d (first rows: %s)", what, len(g), len(want), strings.Join(g[:min(len(g), 3)], "; "))
	}
}

// assertTypes fails unless the table's column names and types are those of schema (nullability may differ:
// SQL results decide their own).
func assertTypes(t *testing.T, what string, got *arrow.Schema, want *arrow.Schema) {
	t.Helper()
	if got.NumFields() != want.NumFields() {
		t.Fatalf("%s: schema %s, want %s", what, got, want)
	}
	for i, f := range want.Fields() {
		g := got.Field(i)
		if g.Name != f.Name || !arrow.TypeEqual(g.Type, f.Type) {
			t.Fatalf("%s: column %d is %s: %s, want %s: %s", what, i, g.Name, g.Type, f.Name, f.Type)
		}
	}
}
