// analyzer_cost: CPU time per SqlAnalyzer::AnalyzeQuery for pgbench's -M simple statements, whose
// literals differ on every call (bench/NOTES.md section 9). Single-threaded, seeded, no server.
//
//   analyzer_cost [--iterations N] [--seed S]
//
// Prints one line per workload: microseconds of thread CPU per analyzed Query string.
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "agent/inspect/sql_analyzer.h"

namespace {

using pgward::inspect::SqlAnalyzer;

double ThreadCpuMicros() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// pgbench's built-in scripts at scale 10, as -M simple sends them (variables substituted).
class PgbenchStatements {
 public:
  explicit PgbenchStatements(uint32_t seed) : rng_(seed) {}

  std::string SelectOnly() { return "SELECT abalance FROM pgbench_accounts WHERE aid = " + Num(1, 1000000) + ";"; }

  // One statement of the TPC-B-like script, in script order.
  std::string TpcbNext() {
    switch (step_++ % 7) {
      case 0:
        aid_ = Num(1, 1000000), bid_ = Num(1, 10), tid_ = Num(1, 100), delta_ = Num(-5000, 5000);
        return "BEGIN;";
      case 1: return "UPDATE pgbench_accounts SET abalance = abalance + " + delta_ + " WHERE aid = " + aid_ + ";";
      case 2: return "SELECT abalance FROM pgbench_accounts WHERE aid = " + aid_ + ";";
      case 3: return "UPDATE pgbench_tellers SET tbalance = tbalance + " + delta_ + " WHERE tid = " + tid_ + ";";
      case 4: return "UPDATE pgbench_branches SET bbalance = bbalance + " + delta_ + " WHERE bid = " + bid_ + ";";
      case 5:
        return "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (" + tid_ + ", " + bid_ + ", " + aid_ +
               ", " + delta_ + ", CURRENT_TIMESTAMP);";
      default: return "END;";
    }
  }

  // Application-like traffic: pgbench statements plus strings, IN lists, a join, and statements
  // whose analysis reads a literal (set_config, SET), which are never reused across literals.
  std::string Mix() {
    switch (Pick(10)) {
      case 0: case 1: case 2: return SelectOnly();
      case 3: case 4: case 5: return TpcbNext();
      case 6: return "SELECT o.id, o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.email = '" +
                     Word() + "@example.com' AND o.created_at > now() - interval '" + Num(1, 30) + " days' LIMIT 20";
      case 7: return "SELECT * FROM items WHERE id IN (" + Num(1, 9999) + ", " + Num(1, 9999) + ", " + Num(1, 9999) + ")";
      case 8: return "SELECT set_config('work_mem', '" + Num(1, 64) + "MB', false)";
      default: return "SET application_name = '" + Word() + "'";
    }
  }

  // A different statement shape every time: what a miss costs.
  std::string Unique() { return "SELECT c" + std::to_string(step_++) + " FROM t WHERE id = " + Num(1, 1000); }

 private:
  std::string Num(int lo, int hi) { return std::to_string(std::uniform_int_distribution<int>(lo, hi)(rng_)); }
  int Pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  std::string Word() { return "user" + Num(1, 1000000); }

  std::mt19937 rng_;
  uint64_t step_ = 0;
  std::string aid_, bid_, tid_, delta_;
};

double MicrosPerAnalysis(const std::function<std::string()>& next, int iterations) {
  SqlAnalyzer analyzer;  // default cache and limits, as the agent builds it
  std::vector<std::string> texts;
  texts.reserve(iterations);
  for (int i = 0; i < iterations; ++i) texts.push_back(next());
  for (int i = 0; i < 200; ++i) analyzer.AnalyzeQuery(next());  // warm the caches with other literals
  size_t statements = 0;
  const double start = ThreadCpuMicros();
  for (const std::string& text : texts) statements += analyzer.AnalyzeQuery(text).size();
  const double elapsed = ThreadCpuMicros() - start;
  if (statements == 0) std::fprintf(stderr, "no statements analyzed\n");
  return elapsed / iterations;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 20000;
  uint32_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--iterations") == 0) iterations = std::atoi(argv[i + 1]);
    else if (std::strcmp(argv[i], "--seed") == 0) seed = static_cast<uint32_t>(std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: analyzer_cost [--iterations N] [--seed S]\n");
      return 2;
    }
  }
  if (iterations <= 0) iterations = 1;
  PgbenchStatements select(seed), tpcb(seed), mix(seed), unique(seed);
  std::printf("workload            us_cpu_per_query\n");
  std::printf("select_only         %.2f\n", MicrosPerAnalysis([&] { return select.SelectOnly(); }, iterations));
  std::printf("tpcb                %.2f\n", MicrosPerAnalysis([&] { return tpcb.TpcbNext(); }, iterations));
  std::printf("mix                 %.2f\n", MicrosPerAnalysis([&] { return mix.Mix(); }, iterations));
  std::printf("unique_shapes       %.2f\n", MicrosPerAnalysis([&] { return unique.Unique(); }, iterations / 4 + 1));
  return 0;
}
