package io.github.flightbay.clients;

import static io.github.flightbay.clients.Flights.action;
import static io.github.flightbay.clients.Flights.cmd;
import static io.github.flightbay.clients.Flights.fetch;
import static io.github.flightbay.clients.Flights.uploadTrips;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.arrow.flight.ActionType;
import org.apache.arrow.flight.Criteria;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStatusCode;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.Ticket;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.extension.TestWatcher;

/** The XL-3 round trip with the stock Arrow Java Flight client, each test against a server of its own. */
class RoundTripTest {
  private FlightbayServer server;
  private BufferAllocator allocator;
  private FlightClient client;
  private String serverLog = "";

  /** Prints the server log of a failed test (the server and its directory are gone by then). */
  @RegisterExtension
  final TestWatcher printLogOnFailure =
      new TestWatcher() {
        @Override
        public void testFailed(ExtensionContext context, Throwable cause) {
          System.err.println("flightbay log of " + context.getDisplayName() + ":\n" + serverLog);
        }
      };

  @BeforeEach
  void start() throws Exception {
    server = FlightbayServer.start();
    allocator = new RootAllocator();
    client = FlightClient.builder(allocator, Location.forGrpcInsecure(server.host(), server.port())).build();
  }

  @AfterEach
  void stop() throws Exception {
    try {
      client.close();
      allocator.close(); // throws if any Arrow buffer leaked
    } finally {
      serverLog = server.log();
      server.close();
    }
  }

  private JsonNode upload(String name) throws Exception {
    JsonNode put = uploadTrips(client, allocator, FlightDescriptor.path(name), Trips.ROWS, 4096);
    assertEquals(Trips.ROWS, put.get("num_rows").asLong(), put.toString());
    assertTrue(put.get("id").asLong() > 0, put.toString());
    return put;
  }

  @Test
  void uploadListFetch() throws Exception {
    JsonNode put = upload("java_trips");
    assertEquals("java_trips", put.get("name").asText(), put.toString());
    assertEquals("default", put.get("namespace").asText(), put.toString());
    long id = put.get("id").asLong();

    List<FlightInfo> listed = new ArrayList<>();
    client.listFlights(Criteria.ALL).forEach(listed::add);
    assertEquals(1, listed.size(), "ListFlights");
    FlightInfo info = listed.get(0);
    assertEquals(List.of("default", "java_trips"), info.getDescriptor().getPath());
    assertEquals(Trips.ROWS, info.getRecords());
    assertEquals(id, Flights.parse(info.getAppMetadata()).get("id").asLong());

    List<String> all = Trips.rowsInRange(0, Trips.ROWS, 1);
    for (FlightDescriptor desc : List.of(FlightDescriptor.path(Long.toString(id)), FlightDescriptor.path("java_trips"))) {
      Flights.Fetched got = fetch(client, desc);
      assertEquals(Trips.SCHEMA, got.schema(), "schema of " + desc);
      assertEquals(Trips.ROWS, got.info().getRecords());
      assertEquals(all, got.rows(), "rows of " + desc);
    }
  }

  @Test
  void sqlCount() throws Exception {
    upload("java_trips");
    Flights.Fetched got = fetch(client, cmd("SELECT count(*) AS n FROM java_trips"));
    assertEquals(1, got.schema().getFields().size(), got.schema().toString());
    assertEquals("n", got.schema().getFields().get(0).getName());
    assertEquals(new ArrowType.Int(64, true), got.schema().getFields().get(0).getType());
    assertEquals(List.of(Integer.toString(Trips.ROWS)), got.rows());
    assertEquals("sql", got.metadata().at("/lineage/op").asText(), got.metadata().toString());
  }

  @Test
  void sortByOp() throws Exception {
    long id = upload("java_trips").get("id").asLong();
    Flights.Fetched got =
        fetch(client, cmd("{\"op\":\"sort_by\",\"source\":" + id + ",\"keys\":[[\"x\",\"descending\"]]}"));
    assertEquals(Trips.SCHEMA, got.schema());
    assertEquals(Trips.rowsInRange(Trips.ROWS - 1, -1, -1), got.rows());
    JsonNode meta = got.metadata();
    assertNotEquals(id, meta.get("id").asLong(), meta.toString());
    assertEquals("sort_by", meta.at("/lineage/op").asText(), meta.toString());
    assertEquals(id, meta.at("/lineage/inputs/0").asLong(), meta.toString());
  }

  @Test
  void takeOp() throws Exception {
    upload("java_trips");
    Flights.Fetched got = fetch(client, cmd("{\"op\":\"take\",\"source\":\"java_trips\",\"indices\":[9999,0,7,5000,7]}"));
    assertEquals(Trips.rows(9999, 0, 7, 5000, 7), got.rows());
  }

  @Test
  void actions() throws Exception {
    upload("java_trips");
    Map<String, String> listed = new HashMap<>();
    for (ActionType a : client.listActions()) {
      listed.put(a.getType(), a.getDescription());
    }
    for (String want : List.of("health", "stats", "drop", "lineage")) {
      assertTrue(listed.containsKey(want) && !listed.get(want).isEmpty(), want + " in " + listed);
    }
    assertEquals("ok", action(client, "health", "{}").get("status").asText());
    assertTrue(action(client, "stats", "{}").isObject());

    action(client, "drop", "{\"name\":\"java_trips\"}");
    FlightRuntimeException e =
        assertThrows(FlightRuntimeException.class, () -> client.getInfo(FlightDescriptor.path("java_trips")));
    assertEquals(FlightStatusCode.NOT_FOUND, e.status().code(), e.toString());
  }

  @Test
  void errorCodes() {
    FlightRuntimeException e =
        assertThrows(FlightRuntimeException.class, () -> client.getInfo(FlightDescriptor.path("999")));
    assertEquals(FlightStatusCode.NOT_FOUND, e.status().code(), e.toString());

    e =
        assertThrows(
            FlightRuntimeException.class,
            () -> {
              try (FlightStream s = client.getStream(new Ticket("999".getBytes(StandardCharsets.UTF_8)))) {
                s.next();
              }
            });
    assertEquals(FlightStatusCode.NOT_FOUND, e.status().code(), e.toString());

    e = assertThrows(FlightRuntimeException.class, () -> action(client, "drop", "{\"id\":999}"));
    assertEquals(FlightStatusCode.NOT_FOUND, e.status().code(), e.toString());

    e = assertThrows(FlightRuntimeException.class, () -> client.getInfo(cmd("{\"op\":\"explode\",\"source\":1}")));
    assertEquals(FlightStatusCode.INVALID_ARGUMENT, e.status().code(), e.toString());
  }
}
