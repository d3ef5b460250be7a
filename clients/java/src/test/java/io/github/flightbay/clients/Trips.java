package io.github.flightbay.clients;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.TimeStampMicroTZVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * The test table, the same in the Go tests: row i is x = i (int64), s = "row-i" (utf8, null when i % 10 == 7) and
 * ts = {@link #TS_BASE} + i seconds (timestamp[us, UTC]).
 */
final class Trips {
  static final int ROWS = 10_000;

  /** 2023-11-14T22:13:20Z in microseconds. */
  static final long TS_BASE = 1_700_000_000_000_000L;

  static final Schema SCHEMA =
      new Schema(
          List.of(
              Field.nullable("x", new ArrowType.Int(64, true)),
              Field.nullable("s", ArrowType.Utf8.INSTANCE),
              new Field(
                  "ts",
                  FieldType.nullable(new ArrowType.Timestamp(TimeUnit.MICROSECOND, "UTC")),
                  null)));

  private Trips() {}

  /** Fills root with rows [start, start + n), replacing what it held. */
  static void fill(VectorSchemaRoot root, int start, int n) {
    root.allocateNew();
    BigIntVector x = (BigIntVector) root.getVector("x");
    VarCharVector s = (VarCharVector) root.getVector("s");
    TimeStampMicroTZVector ts = (TimeStampMicroTZVector) root.getVector("ts");
    for (int row = 0; row < n; row++) {
      int i = start + row;
      x.setSafe(row, i);
      if (i % 10 == 7) {
        s.setNull(row);
      } else {
        s.setSafe(row, ("row-" + i).getBytes(StandardCharsets.UTF_8));
      }
      ts.setSafe(row, TS_BASE + i * 1_000_000L);
    }
    root.setRowCount(n);
  }

  /** Row i rendered the way {@link Flights#render} renders a fetched row. */
  static String row(int i) {
    return i + " | " + (i % 10 == 7 ? "null" : "row-" + i) + " | " + (TS_BASE + i * 1_000_000L);
  }

  static List<String> rows(int... indices) {
    List<String> out = new ArrayList<>(indices.length);
    for (int i : indices) {
      out.add(row(i));
    }
    return out;
  }

  static List<String> rowsInRange(int from, int to, int step) {
    List<String> out = new ArrayList<>();
    for (int i = from; step > 0 ? i < to : i > to; i += step) {
      out.add(row(i));
    }
    return out;
  }
}
