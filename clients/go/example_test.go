package flightbay_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// uploadSQLFetch is the Go example of docs/clients-go-java.md: upload a table, run SQL on it, fetch the result.
func uploadSQLFetch(addr string, out io.Writer) error {
	ctx := context.Background()
	client, err := flight.NewClientWithMiddleware(addr, nil, nil,
		grpc.WithTransportCredentials(insecure.NewCredentials())) // plaintext gRPC
	if err != nil {
		return err
	}
	defer client.Close()

	// Upload: DoPut to PATH ["trips"]; the one PutResult holds {"id":1,"name":"trips",...}.
	schema := arrow.NewSchema([]arrow.Field{{Name: "fare", Type: arrow.PrimitiveTypes.Float64}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.Float64Builder).AppendValues([]float64{7.5, 12, 30.25}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()

	put, err := client.DoPut(ctx)
	if err != nil {
		return err
	}
	w := flight.NewRecordWriter(put, ipc.WithSchema(schema))
	w.SetFlightDescriptor(&flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"trips"}})
	if err := w.Write(rec); err != nil {
		return err
	}
	w.Close()
	put.CloseSend()
	res, err := put.Recv()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "uploaded: %s\n", res.AppMetadata)

	// SQL: a CMD descriptor. The result is a new flight; DoGet its endpoints' tickets.
	info, err := client.GetFlightInfo(ctx, &flight.FlightDescriptor{
		Type: flight.DescriptorCMD,
		Cmd:  []byte("SELECT count(*) AS n, sum(fare) AS total FROM trips"),
	})
	if err != nil {
		return err
	}
	for _, ep := range info.Endpoint {
		stream, err := client.DoGet(ctx, ep.Ticket)
		if err != nil {
			return err
		}
		r, err := flight.NewRecordReader(stream)
		if err != nil {
			return err
		}
		for r.Next() {
			rec := r.RecordBatch()
			fmt.Fprintf(out, "n=%s total=%s\n", rec.Column(0).ValueStr(0), rec.Column(1).ValueStr(0))
		}
		r.Release()
		if err := r.Err(); err != nil {
			return err
		}
	}
	return nil
}

func TestDocExample(t *testing.T) {
	var out strings.Builder
	if err := uploadSQLFetch(startServer(t), &out); err != nil {
		t.Fatalf("%v\noutput so far:\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `"name":"trips"`) || !strings.Contains(out.String(), "n=3 total=49.75\n") {
		t.Fatalf("unexpected output:\n%s", out.String())
	}
}
