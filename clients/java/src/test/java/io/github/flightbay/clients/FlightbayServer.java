package io.github.flightbay.clients;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A flightbay process on 127.0.0.1 with an ephemeral port, for one test.
 *
 * <p>The binary is {@code FLIGHTBAY_BIN} (default {@code ../../target/ci/flightbay}, relative to clients/java). The
 * server writes its bound {@code host:port} to a ready file; {@link #close()} stops it and removes its directory.
 */
final class FlightbayServer implements AutoCloseable {
  private final Path dir;
  private final Path log;
  private final Process process;
  private final String host;
  private final int port;

  private final Thread stopOnExit;

  private FlightbayServer(Path dir, Path log, Process process, String address) {
    this.dir = dir;
    this.log = log;
    this.process = process;
    // If the test JVM exits without close() (a crash or a timeout), don't leave the server running.
    this.stopOnExit = new Thread(process::destroy);
    Runtime.getRuntime().addShutdownHook(stopOnExit);
    int colon = address.lastIndexOf(':');
    this.host = address.substring(0, colon);
    this.port = Integer.parseInt(address.substring(colon + 1));
  }

  /** The server binary: {@code FLIGHTBAY_BIN}, default {@code ../../target/ci/flightbay}. */
  static String binary() {
    String bin = System.getenv().getOrDefault("FLIGHTBAY_BIN", "../../target/ci/flightbay");
    if (!Files.isExecutable(Paths.get(bin))) {
      throw new IllegalStateException(
          "flightbay binary not found at " + bin + " (set FLIGHTBAY_BIN or run `cargo build --profile ci`)");
    }
    return bin;
  }

  /** Starts a server with the default options plus {@code extra} flags. */
  static FlightbayServer start(String... extra) throws IOException, InterruptedException {
    String bin = binary();
    Path dir = Files.createTempDirectory("flightbay-java-");
    Path ready = dir.resolve("ready");
    Path log = dir.resolve("server.log");
    List<String> command =
        new ArrayList<>(
            List.of(
                bin,
                "--host", "127.0.0.1",
                "--port", "0",
                "--http-port", "off",
                "--ready-file", ready.toString(),
                "--data-dir", dir.resolve("data").toString(),
                "--memory-limit", "1GiB"));
    command.addAll(List.of(extra));
    Process process =
        new ProcessBuilder(command)
            .redirectErrorStream(true)
            .redirectOutput(log.toFile())
            .start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    try {
      // flightbay writes the ready file by rename, so it is complete once it exists.
      while (!Files.exists(ready)) {
        if (!process.isAlive()) {
          throw new IllegalStateException(
              "flightbay exited with " + process.exitValue() + ":\n" + Files.readString(log));
        }
        if (System.nanoTime() > deadline) {
          throw new IllegalStateException("flightbay did not write its ready file within 30s");
        }
        Thread.sleep(20);
      }
      // The first line is the Flight address (a second one, the HTTP listener's, appears when that is on).
      String address = Files.readString(ready, StandardCharsets.UTF_8).lines().findFirst().orElse("").trim();
      return new FlightbayServer(dir, log, process, address);
    } catch (RuntimeException | IOException | InterruptedException e) {
      stop(process);
      deleteTree(dir);
      throw e;
    }
  }

  String host() {
    return host;
  }

  int port() {
    return port;
  }

  /** The server's log so far, for failure messages. */
  String log() {
    try {
      return Files.readString(log);
    } catch (IOException e) {
      return "(no log: " + e + ")";
    }
  }

  @Override
  public void close() {
    Runtime.getRuntime().removeShutdownHook(stopOnExit);
    stop(process);
    deleteTree(dir);
  }

  private static void stop(Process process) {
    process.destroy(); // SIGTERM: flightbay shuts down gracefully
    try {
      if (!process.waitFor(20, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor();
      }
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
  }

  private static void deleteTree(Path dir) {
    try (Stream<Path> paths = Files.walk(dir)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
