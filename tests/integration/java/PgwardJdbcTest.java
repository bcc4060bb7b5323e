// pgJDBC through pgward: plain queries, a PreparedStatement reused in a loop (pgJDBC switches
// to a named server-side statement after prepareThreshold=5 uses), a batch insert and a
// transaction (rollback, then commit). Prints "key=value" lines; exits 1 on any failure.
//
// java -cp /usr/share/java/postgresql.jar:DIR PgwardJdbcTest JDBC_URL USER TOKEN TABLE [PROP=VALUE...]
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

public final class PgwardJdbcTest {
  private static void out(String key, Object value) {
    System.out.println(key + "=" + value);
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 4) {
      System.err.println("usage: PgwardJdbcTest JDBC_URL USER TOKEN TABLE [PROP=VALUE...]");
      System.exit(2);
    }
    String url = args[0];
    String table = args[3];
    Properties props = new Properties();
    props.setProperty("user", args[1]);
    props.setProperty("password", args[2]);
    props.setProperty("sslmode", "require");
    props.setProperty("prepareThreshold", "3");
    for (int i = 4; i < args.length; i++) {
      int eq = args[i].indexOf('=');
      props.setProperty(args[i].substring(0, eq), args[i].substring(eq + 1));
    }
    try (Connection conn = DriverManager.getConnection(url, props)) {
      try (Statement st = conn.createStatement();
           ResultSet rs = st.executeQuery("SELECT count(*) FROM customers")) {
        rs.next();
        out("customers", rs.getLong(1));
      }
      try (Statement st = conn.createStatement();
           ResultSet rs = st.executeQuery("SELECT current_setting('pgward.principal'), current_setting('application_name')")) {
        rs.next();
        out("principal", rs.getString(1));
        out("application_name", rs.getString(2));
      }
      StringBuilder names = new StringBuilder();
      try (PreparedStatement ps = conn.prepareStatement("SELECT name FROM customers WHERE id = ?")) {
        for (int i = 0; i < 10; i++) {
          ps.setInt(1, (i % 3) + 1);
          try (ResultSet rs = ps.executeQuery()) {
            if (!rs.next()) throw new SQLException("no row for id " + ((i % 3) + 1));
            if (names.length() > 0) names.append(',');
            names.append(rs.getString(1));
          }
        }
      }
      out("loop", names);
      conn.setAutoCommit(false);
      try (PreparedStatement ps = conn.prepareStatement("INSERT INTO " + table + " (n, label) VALUES (?, ?)")) {
        for (int i = 0; i < 50; i++) {
          ps.setInt(1, i);
          ps.setString(2, "batch-" + i);
          ps.addBatch();
        }
        int[] counts = ps.executeBatch();
        int total = 0;
        for (int c : counts) total += c;
        out("batch", total);
      }
      conn.commit();
      try (Statement st = conn.createStatement()) {
        st.executeUpdate("INSERT INTO " + table + " (n, label) VALUES (1000, 'rolled-back')");
      }
      conn.rollback();
      try (Statement st = conn.createStatement()) {
        st.executeUpdate("INSERT INTO " + table + " (n, label) VALUES (2000, 'committed')");
      }
      conn.commit();
      // A statement pgward refuses (a DO block; the grant leaves out the procedure class)
      // fails the transaction as a server error would: the insert before it is not committed.
      try (Statement st = conn.createStatement()) {
        st.executeUpdate("INSERT INTO " + table + " (n, label) VALUES (3000, 'before-refusal')");
      }
      try (Statement st = conn.createStatement()) {
        st.execute("DO $$ BEGIN PERFORM 1; END $$");
        out("refused", "no");
      } catch (SQLException e) {
        out("refused", e.getSQLState());
      }
      try (Statement st = conn.createStatement()) {
        st.executeQuery("SELECT 1");
        out("after_refusal", "ran");
      } catch (SQLException e) {
        out("after_refusal", e.getSQLState());
      }
      conn.commit();
      conn.setAutoCommit(true);
      try (Statement st = conn.createStatement();
           ResultSet rs = st.executeQuery("SELECT count(*) FROM " + table)) {
        rs.next();
        out("count", rs.getLong(1));
      }
      out("done", "ok");
    } catch (SQLException e) {
      System.err.println("jdbc: SQLSTATE " + e.getSQLState() + ": " + e.getMessage());
      System.exit(1);
    }
  }
}
