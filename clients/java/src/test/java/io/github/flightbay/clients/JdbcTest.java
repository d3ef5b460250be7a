package io.github.flightbay.clients;

import static io.github.flightbay.clients.Flights.uploadTrips;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.Location;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Flight SQL through the Arrow Flight SQL JDBC driver, as a JDBC tool uses it: a query, a PreparedStatement with a
 * {@code ?}, and the metadata walk DBeaver does when it opens a connection and a table.
 */
class JdbcTest {
  private FlightbayServer server;
  private BufferAllocator allocator;
  private FlightClient client;
  private Connection jdbc;

  @BeforeEach
  void start() throws Exception {
    server = FlightbayServer.start();
    allocator = new RootAllocator();
    client = FlightClient.builder(allocator, Location.forGrpcInsecure(server.host(), server.port())).build();
    JsonNode put = uploadTrips(client, allocator, FlightDescriptor.path("sales", "trips"), 1000, 256);
    assertEquals(1000, put.get("num_rows").asLong(), put.toString());
    String url = "jdbc:arrow-flight-sql://" + server.host() + ":" + server.port() + "?useEncryption=false";
    jdbc = DriverManager.getConnection(url);
  }

  @AfterEach
  void stop() throws Exception {
    try {
      jdbc.close();
      client.close();
      allocator.close();
    } finally {
      server.close();
    }
  }

  @Test
  void queryAndPreparedStatement() throws Exception {
    // The connection is lazy: only a query proves the driver talks to the server.
    try (Statement st = jdbc.createStatement();
        ResultSet rs = st.executeQuery("SELECT count(*) AS n, sum(x) AS total FROM sales.trips WHERE s IS NULL")) {
      assertTrue(rs.next());
      assertEquals(100, rs.getLong("n"));
      assertEquals(50_200, rs.getLong("total")); // 7 + 17 + ... + 997
      assertFalse(rs.next());
    }
    try (PreparedStatement ps = jdbc.prepareStatement("SELECT x, s FROM sales.trips WHERE x >= ? ORDER BY x")) {
      ps.setLong(1, 995);
      List<String> rows = new ArrayList<>();
      try (ResultSet rs = ps.executeQuery()) {
        while (rs.next()) {
          rows.add(rs.getLong(1) + " " + rs.getString(2));
        }
      }
      assertEquals(List.of("995 row-995", "996 row-996", "997 null", "998 row-998", "999 row-999"), rows);
      ps.setLong(1, 999);
      try (ResultSet rs = ps.executeQuery()) {
        assertTrue(rs.next());
        assertEquals(999, rs.getLong(1));
        assertFalse(rs.next());
      }
    }
    // The JDBC query is a flight like any other: the same SQL as a plain CMD is a cache hit.
    FlightInfo info = client.getInfo(Flights.cmd("SELECT count(*) AS n, sum(x) AS total FROM sales.trips WHERE s IS NULL"));
    assertEquals("hit", Flights.parse(info.getAppMetadata()).get("cache").asText());
  }

  @Test
  void writesAreRefused() throws Exception {
    try (Statement st = jdbc.createStatement()) {
      SQLException e = assertThrows(SQLException.class, () -> st.executeQuery("DELETE FROM sales.trips"));
      assertTrue(String.valueOf(e.getMessage()).contains("read-only"), e.getMessage());
    }
  }

  @Test
  void dbeaverStyleMetadataWalk() throws Exception {
    DatabaseMetaData meta = jdbc.getMetaData();
    assertEquals("flightbay", meta.getDatabaseProductName());
    assertEquals(List.of("flightbay"), column(meta.getCatalogs(), "TABLE_CAT"));
    // The default namespace always exists.
    assertEquals(List.of("default", "sales"), column(meta.getSchemas(), "TABLE_SCHEM"));
    assertEquals(List.of("TABLE"), column(meta.getTableTypes(), "TABLE_TYPE"));
    assertEquals(List.of("trips"), column(meta.getTables("flightbay", "sales", "%", null), "TABLE_NAME"));
    assertEquals(List.of("x", "s", "ts"), column(meta.getColumns(null, "sales", "trips", "%"), "COLUMN_NAME"));
    assertEquals(List.of(), column(meta.getPrimaryKeys(null, "sales", "trips"), "COLUMN_NAME"));
    assertEquals(List.of(), column(meta.getImportedKeys(null, "sales", "trips"), "FKCOLUMN_NAME"));
    assertEquals(List.of(), column(meta.getExportedKeys(null, "sales", "trips"), "FKCOLUMN_NAME"));
    // DBeaver calls getTypeInfo too; driver 18.3.0 answers it itself (Avatica's empty default) without asking the
    // server, so only that it succeeds is checked here (GetXdbcTypeInfo is tested in tests/flight_sql.rs).
    column(meta.getTypeInfo(), "TYPE_NAME");
  }

  @Test
  void tokenAuthThroughTheHandshake() throws Exception {
    String secret = "jdbc-test-secret-0123456789abcdef";
    try (FlightbayServer secured = FlightbayServer.start("--jwt-secret", secret)) {
      String token = run(FlightbayServer.binary(), "token", "--secret", secret, "--user", "jdbc", "--grant", "*:read");
      String base = "jdbc:arrow-flight-sql://" + secured.host() + ":" + secured.port() + "?useEncryption=false";
      try (Connection c = DriverManager.getConnection(base + "&token=" + token);
          Statement st = c.createStatement();
          ResultSet rs = st.executeQuery("SELECT 41 + 1 AS answer")) {
        assertTrue(rs.next());
        assertEquals(42, rs.getLong("answer"));
      }
      // A wrong token fails the handshake, which JDBC does when it connects.
      assertThrows(SQLException.class, () -> DriverManager.getConnection(base + "&token=not-a-token").close());
    }
  }

  private static String run(String... command) throws Exception {
    Process p = new ProcessBuilder(command).redirectErrorStream(false).start();
    String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8).trim();
    assertEquals(0, p.waitFor(), String.join(" ", command));
    return out;
  }

  private static List<String> column(ResultSet rs, String name) throws SQLException {
    List<String> out = new ArrayList<>();
    try (rs) {
      while (rs.next()) {
        out.add(rs.getString(name));
      }
    }
    return out;
  }
}
