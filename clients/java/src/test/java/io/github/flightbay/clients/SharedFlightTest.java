package io.github.flightbay.clients;

import static io.github.flightbay.clients.Flights.cmd;
import static io.github.flightbay.clients.Flights.fetch;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.URI;
import java.util.List;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.Location;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.Test;

/**
 * Reads, by name, the flight the Go tests derive ({@code go_shared}, see clients/go/shared_test.go) from the server at
 * {@code FLIGHTBAY_URI}. tests/run.d/50-java.sh starts that server and runs the Go test first; without
 * {@code FLIGHTBAY_URI} this test is reported as skipped.
 */
class SharedFlightTest {
  @Test
  void readsFlightNamedByGoClient() throws Exception {
    String uri = System.getenv("FLIGHTBAY_URI");
    assumeTrue(
        uri != null && !uri.isEmpty(),
        "FLIGHTBAY_URI is not set: run the Go TestSharedFlight against a server and point FLIGHTBAY_URI at it");
    URI parsed = URI.create(uri.contains("://") ? uri : "grpc+tcp://" + uri);
    try (BufferAllocator allocator = new RootAllocator();
        FlightClient client =
            FlightClient.builder(allocator, Location.forGrpcInsecure(parsed.getHost(), parsed.getPort())).build()) {
      Flights.Fetched shared = fetch(client, FlightDescriptor.path("go_shared"));
      assertEquals(
          Trips.rows(0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000), shared.rows(), "rows of go_shared");
      assertEquals(
          List.of("x", "s", "ts"), shared.schema().getFields().stream().map(f -> f.getName()).toList());
      assertEquals(Trips.SCHEMA.getFields().get(2).getType(), shared.schema().getFields().get(2).getType());
      JsonNode meta = shared.metadata();
      assertEquals("sql", meta.at("/lineage/op").asText(), meta.toString());
      assertTrue(meta.get("names").toString().contains("go_shared"), meta.toString());

      // Derive from it in turn: the Java client's SQL sees the Go client's flight by name.
      Flights.Fetched sum = fetch(client, cmd("SELECT sum(x) AS total, count(s) AS strings FROM go_shared"));
      assertEquals(new ArrowType.Int(64, true), sum.schema().getFields().get(0).getType());
      assertEquals(List.of("45000 | 10"), sum.rows());
    }
  }
}
