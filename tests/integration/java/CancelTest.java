// JDBC cancel through pgward: runs `select pg_sleep(N)` on one thread and calls
// Statement.cancel() from another when the driving test writes "cancel" on stdin (it first
// checks in pg_stat_activity that the statement is running, so there is no timing guess here).
//
// Usage: java -cp /usr/share/java/postgresql.jar CancelTest.java JDBC_URL SLEEP_SECONDS
//        env PGWARD_TOKEN = the access token (the password); the user name is arbitrary.
// Prints one line per event:
//   READY                      connected, about to run the query
//   CANCEL_SENT                Statement.cancel() returned
//   RESULT sqlstate=S ms=M     the query ended with SQLException S, M ms after CANCEL_SENT
//   RESULT ok ms=M             the query completed (cancel did not work)
//   AFTER ok                   the same connection runs `select 1` afterwards
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;

public class CancelTest {
  public static void main(String[] args) throws Exception {
    String url = args[0];
    int sleepSeconds = Integer.parseInt(args[1]);
    Properties props = new Properties();
    props.setProperty("user", "jdbc-cancel");
    props.setProperty("password", System.getenv("PGWARD_TOKEN"));
    try (Connection conn = DriverManager.getConnection(url, props)) {
      conn.setAutoCommit(true);
      final Statement stmt = conn.createStatement();
      final AtomicLong cancelledAt = new AtomicLong(0);
      Thread canceller = new Thread(() -> {
        try {
          BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
          String line = in.readLine();
          if (line != null && line.trim().equals("cancel")) {
            stmt.cancel();
            cancelledAt.set(System.nanoTime());
            System.out.println("CANCEL_SENT");
            System.out.flush();
          }
        } catch (Exception e) {
          System.out.println("CANCEL_FAILED " + e);
          System.out.flush();
        }
      });
      canceller.setDaemon(true);
      canceller.start();
      System.out.println("READY");
      System.out.flush();
      try (ResultSet rs = stmt.executeQuery("select pg_sleep(" + sleepSeconds + ")")) {
        while (rs.next()) {
        }
        System.out.println("RESULT ok ms=" + sinceMs(cancelledAt.get()));
      } catch (SQLException e) {
        canceller.join(5000);
        System.out.println("RESULT sqlstate=" + e.getSQLState() + " ms=" + sinceMs(cancelledAt.get())
            + " message=" + e.getMessage().replace('\n', ' '));
      }
      System.out.flush();
      try (Statement s2 = conn.createStatement(); ResultSet rs = s2.executeQuery("select 1")) {
        rs.next();
        System.out.println(rs.getInt(1) == 1 ? "AFTER ok" : "AFTER wrong");
      } catch (SQLException e) {
        System.out.println("AFTER sqlstate=" + e.getSQLState());
      }
      System.out.flush();
    }
  }

  private static long sinceMs(long t) {
    return t == 0 ? -1 : (System.nanoTime() - t) / 1_000_000;
  }
}
