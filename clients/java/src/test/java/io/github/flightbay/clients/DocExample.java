package io.github.flightbay.clients;

import static java.nio.charset.StandardCharsets.UTF_8;

import java.io.PrintStream;
import java.util.List;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightEndpoint;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.PutResult;
import org.apache.arrow.flight.SyncPutListener;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;

/** The Java example of docs/clients-go-java.md: upload a table, run SQL on it, fetch the result. */
final class DocExample {
  private DocExample() {}

  static void uploadSqlFetch(String host, int port, PrintStream out) throws Exception {
    try (BufferAllocator allocator = new RootAllocator();
        FlightClient client = FlightClient.builder(allocator, Location.forGrpcInsecure(host, port)).build()) {

      // Upload: DoPut to PATH ["trips"]; the one PutResult holds {"id":1,"name":"trips",...}.
      Schema schema =
          new Schema(List.of(Field.nullable("fare", new ArrowType.FloatingPoint(FloatingPointPrecision.DOUBLE))));
      try (VectorSchemaRoot root = VectorSchemaRoot.create(schema, allocator)) {
        SyncPutListener listener = new SyncPutListener();
        FlightClient.ClientStreamListener put = client.startPut(FlightDescriptor.path("trips"), root, listener);
        Float8Vector fare = (Float8Vector) root.getVector("fare");
        fare.allocateNew(3);
        fare.set(0, 7.5);
        fare.set(1, 12);
        fare.set(2, 30.25);
        root.setRowCount(3);
        put.putNext();
        put.completed();
        put.getResult();
        try (PutResult result = listener.read()) {
          ArrowBuf meta = result.getApplicationMetadata();
          byte[] json = new byte[(int) meta.readableBytes()];
          meta.getBytes(0, json);
          out.println("uploaded: " + new String(json, UTF_8));
        }
      }

      // SQL: a CMD descriptor. The result is a new flight; DoGet its endpoints' tickets.
      FlightInfo info =
          client.getInfo(FlightDescriptor.command("SELECT count(*) AS n, sum(fare) AS total FROM trips".getBytes(UTF_8)));
      for (FlightEndpoint endpoint : info.getEndpoints()) {
        try (FlightStream stream = client.getStream(endpoint.getTicket())) {
          while (stream.next()) {
            out.print(stream.getRoot().contentToTSVString());
          }
        }
      }
    }
  }
}
