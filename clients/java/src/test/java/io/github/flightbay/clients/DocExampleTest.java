package io.github.flightbay.clients;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** Runs the code shown in docs/clients-go-java.md against a server of its own. */
class DocExampleTest {
  @Test
  void uploadSqlFetch() throws Exception {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (FlightbayServer server = FlightbayServer.start();
        PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8)) {
      DocExample.uploadSqlFetch(server.host(), server.port(), out);
    }
    String text = bytes.toString(StandardCharsets.UTF_8);
    assertTrue(text.contains("\"name\":\"trips\""), text);
    assertTrue(text.contains("n\ttotal\n3\t49.75\n"), text);
  }
}
