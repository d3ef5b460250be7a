package io.github.flightbay.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.StringJoiner;
import org.apache.arrow.flight.Action;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightEndpoint;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.PutResult;
import org.apache.arrow.flight.Result;
import org.apache.arrow.flight.SyncPutListener;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.Schema;

/** Round-trip helpers over the stock {@link FlightClient}; nothing here is specific to flightbay but the JSON. */
final class Flights {
  static final ObjectMapper JSON = new ObjectMapper();

  private Flights() {}

  /** What DoGet on every endpoint of a FlightInfo returned. */
  record Fetched(FlightInfo info, Schema schema, List<String> rows) {
    JsonNode metadata() {
      return parse(info.getAppMetadata());
    }
  }

  /** Uploads rows [0, rows) of the test table to desc in batches and returns the PutResult JSON. */
  static JsonNode uploadTrips(
      FlightClient client, BufferAllocator allocator, FlightDescriptor desc, int rows, int batchRows)
      throws Exception {
    try (VectorSchemaRoot root = VectorSchemaRoot.create(Trips.SCHEMA, allocator)) {
      SyncPutListener listener = new SyncPutListener();
      FlightClient.ClientStreamListener put = client.startPut(desc, root, listener);
      for (int start = 0; start < rows; start += batchRows) {
        Trips.fill(root, start, Math.min(batchRows, rows - start));
        put.putNext();
      }
      put.completed();
      put.getResult();
      try (PutResult result = listener.read()) {
        assertNotNull(result, "DoPut returned no PutResult");
        JsonNode meta = parse(bytes(result.getApplicationMetadata()));
        assertNull(listener.read(), "DoPut returned more than one PutResult");
        return meta;
      }
    }
  }

  /** GetFlightInfo on desc, then DoGet on every endpoint in order; checks each stream's schema against the info. */
  static Fetched fetch(FlightClient client, FlightDescriptor desc) throws Exception {
    FlightInfo info = client.getInfo(desc);
    Schema schema = info.getSchema();
    List<String> rows = new ArrayList<>();
    for (FlightEndpoint endpoint : info.getEndpoints()) {
      try (FlightStream stream = client.getStream(endpoint.getTicket())) {
        assertEquals(schema.getFields(), stream.getSchema().getFields(), "DoGet schema differs from FlightInfo's");
        while (stream.next()) {
          rows.addAll(render(stream.getRoot()));
        }
      }
    }
    return new Fetched(info, schema, rows);
  }

  /** Runs a custom action with a JSON body and returns its one JSON result. */
  static JsonNode action(FlightClient client, String type, String body) throws IOException {
    List<Result> results = new ArrayList<>();
    client.doAction(new Action(type, body.getBytes(StandardCharsets.UTF_8))).forEachRemaining(results::add);
    assertEquals(1, results.size(), "action " + type + " results");
    return JSON.readTree(results.get(0).getBody());
  }

  /** One "a | b | c" line per row; timestamps render as their raw long value. */
  static List<String> render(VectorSchemaRoot root) {
    List<String> out = new ArrayList<>(root.getRowCount());
    for (int i = 0; i < root.getRowCount(); i++) {
      StringJoiner row = new StringJoiner(" | ");
      for (FieldVector v : root.getFieldVectors()) {
        Object value = v.getObject(i);
        row.add(String.valueOf(value));
      }
      out.add(row.toString());
    }
    return out;
  }

  static FlightDescriptor cmd(String text) {
    return FlightDescriptor.command(text.getBytes(StandardCharsets.UTF_8));
  }

  static JsonNode parse(byte[] json) {
    try {
      return JSON.readTree(json);
    } catch (IOException e) {
      throw new AssertionError("not JSON: " + new String(json, StandardCharsets.UTF_8), e);
    }
  }

  private static byte[] bytes(ArrowBuf buf) {
    assertNotNull(buf, "PutResult has no app_metadata");
    byte[] out = new byte[(int) buf.readableBytes()];
    buf.getBytes(0, out);
    return out;
  }
}
