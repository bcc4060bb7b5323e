// grpc_floor: the cost floor of one gateway<->agent hop. Two processes (this one and a forked
// server) ping-pong SessionFrames over the real AgentService.Session bidi RPC on loopback with
// TLS, using the completion-queue async API and one polling thread per side; prints round trips
// per second, median and p99 round-trip latency, and CPU per round trip of both processes.
//
//   grpc_floor [--sessions N] [--seconds S] [--up BYTES] [--down BYTES]
//
// N sessions each get their own stream (one RPC per session, as the relay opens today).
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/crypto/tls_material.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace {

using pgward::v1::AgentService;
using pgward::v1::SessionFrame;
using Clock = std::chrono::steady_clock;

struct Options {
  int sessions = 1;
  int seconds = 5;
  size_t up = 100;
  size_t down = 200;
};

// A completion-queue tag: Proceed(ok) runs on the polling thread.
class Tag {
 public:
  virtual ~Tag() = default;
  virtual void Proceed(bool ok) = 0;
};

// Server side of one Session stream: read a frame, answer with `down` bytes, repeat.
class ServerCall final : public Tag {
 public:
  ServerCall(AgentService::AsyncService* service, grpc::ServerCompletionQueue* cq, size_t down)
      : service_(service), cq_(cq), stream_(&ctx_), down_(down) {
    reply_.set_data(std::string(down_, 'd'));
    reply_.set_message_boundary(true);
    service_->RequestSession(&ctx_, &stream_, cq_, cq_, this);
  }

  void Proceed(bool ok) override {
    switch (state_) {
      case State::kRequested:
        if (!ok) { delete this; return; }
        new ServerCall(service_, cq_, down_);
        state_ = State::kReading;
        stream_.Read(&request_, this);
        return;
      case State::kReading:
        if (!ok) {
          state_ = State::kFinishing;
          stream_.Finish(grpc::Status::OK, this);
          return;
        }
        state_ = State::kWriting;
        stream_.Write(reply_, this);
        return;
      case State::kWriting:
        state_ = State::kReading;
        stream_.Read(&request_, this);
        return;
      case State::kFinishing:
        delete this;
        return;
    }
  }

 private:
  enum class State { kRequested, kReading, kWriting, kFinishing };
  AgentService::AsyncService* service_;
  grpc::ServerCompletionQueue* cq_;
  grpc::ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<SessionFrame, SessionFrame> stream_;
  SessionFrame request_;
  SessionFrame reply_;
  size_t down_;
  State state_ = State::kRequested;
};

[[noreturn]] void RunServer(const std::string& cert, const std::string& key, int port_pipe) {
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({key, cert});
  AgentService::AsyncService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl), &port);
  builder.RegisterService(&service);
  auto cq = builder.AddCompletionQueue();
  auto server = builder.BuildAndStart();
  if (!server || port == 0) _exit(3);
  if (write(port_pipe, &port, sizeof port) != sizeof port) _exit(3);
  close(port_pipe);
  const char* down_env = getenv("GRPC_FLOOR_DOWN");
  new ServerCall(&service, cq.get(), down_env ? std::strtoul(down_env, nullptr, 10) : 200);
  void* tag = nullptr;
  bool ok = false;
  while (cq->Next(&tag, &ok)) static_cast<Tag*>(tag)->Proceed(ok);
  _exit(0);
}

// Client side of one Session stream: write `up` bytes, wait for the answer, record the time.
class ClientCall final : public Tag {
 public:
  ClientCall(AgentService::Stub* stub, grpc::CompletionQueue* cq, size_t up, Clock::time_point end)
      : end_(end) {
    request_.set_data(std::string(up, 'u'));
    stream_ = stub->PrepareAsyncSession(&ctx_, cq);
    stream_->StartCall(this);
  }

  void Proceed(bool ok) override {
    switch (state_) {
      case State::kStarting:
        if (!ok) return Fail();
        Send();
        return;
      case State::kWriting:
        if (!ok) return Fail();
        state_ = State::kReading;
        stream_->Read(&reply_, this);
        return;
      case State::kReading:
        if (!ok) return Fail();
        latencies_us_.push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - sent_).count() / 1000.0);
        if (Clock::now() >= end_) {
          state_ = State::kClosing;
          stream_->WritesDone(this);
          return;
        }
        Send();
        return;
      case State::kClosing:
        state_ = State::kFinishing;
        stream_->Finish(&status_, this);
        return;
      case State::kFinishing:
        done_ = true;
        return;
    }
  }

  bool done() const { return done_; }
  bool failed() const { return failed_; }
  const std::vector<double>& latencies_us() const { return latencies_us_; }

 private:
  enum class State { kStarting, kWriting, kReading, kClosing, kFinishing };
  void Send() {
    state_ = State::kWriting;
    sent_ = Clock::now();
    stream_->Write(request_, this);
  }
  void Fail() {
    failed_ = true;
    done_ = true;
  }

  Clock::time_point end_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<SessionFrame, SessionFrame>> stream_;
  SessionFrame request_;
  SessionFrame reply_;
  grpc::Status status_;
  Clock::time_point sent_;
  std::vector<double> latencies_us_;
  State state_ = State::kStarting;
  bool done_ = false;
  bool failed_ = false;
};

// utime + stime of a process in seconds, from /proc/PID/stat.
double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  auto close_paren = line.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream fields(line.substr(close_paren + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) { stime = std::stod(field); break; }
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(p * static_cast<double>(values.size() - 1));
  return values[index];
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> long {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "grpc_floor: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      char* end = nullptr;
      long v = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || v <= 0) {
        std::fprintf(stderr, "grpc_floor: %s needs a positive integer\n", arg.c_str());
        std::exit(2);
      }
      return v;
    };
    if (arg == "--sessions") options.sessions = static_cast<int>(value());
    else if (arg == "--seconds") options.seconds = static_cast<int>(value());
    else if (arg == "--up") options.up = static_cast<size_t>(value());
    else if (arg == "--down") options.down = static_cast<size_t>(value());
    else {
      std::fprintf(stderr, "usage: grpc_floor [--sessions N] [--seconds S] [--up BYTES] [--down BYTES]\n");
      std::exit(2);
    }
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseOptions(argc, argv);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  char dir_template[] = "/tmp/grpc_floor.XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (dir == nullptr) {
    std::perror("grpc_floor: mkdtemp");
    return 1;
  }
  const std::string cert_path = std::string(dir) + "/floor.crt";
  const std::string key_path = std::string(dir) + "/floor.key";
  if (auto s = pgward::crypto::EnsureSelfSignedCertificate(cert_path, key_path, "localhost", {}); !s.ok()) {
    std::fprintf(stderr, "grpc_floor: certificate: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  auto cert = pgward::crypto::ReadFileToString(cert_path);
  auto key = pgward::crypto::ReadFileToString(key_path);
  std::remove(cert_path.c_str());
  std::remove(key_path.c_str());
  rmdir(dir);
  if (!cert.ok() || !key.ok()) return 1;

  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return 1;
  setenv("GRPC_FLOOR_DOWN", std::to_string(options.down).c_str(), 1);
  // Fork before any gRPC object exists in this process: gRPC is not fork-safe once started.
  pid_t server = fork();
  if (server < 0) return 1;
  if (server == 0) {
    close(pipe_fds[0]);
    RunServer(*cert, *key, pipe_fds[1]);
  }
  close(pipe_fds[1]);
  int port = 0;
  if (read(pipe_fds[0], &port, sizeof port) != sizeof port) {
    std::fprintf(stderr, "grpc_floor: the server did not start\n");
    return 1;
  }
  close(pipe_fds[0]);

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = *cert;
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::SslCredentials(ssl), args);
  auto stub = AgentService::NewStub(channel);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
    std::fprintf(stderr, "grpc_floor: could not connect\n");
    kill(server, SIGKILL);
    return 1;
  }

  grpc::CompletionQueue cq;
  const double server_cpu0 = ProcessCpuSeconds(server);
  const double client_cpu0 = ProcessCpuSeconds(getpid());
  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(options.seconds);
  std::vector<std::unique_ptr<ClientCall>> calls;
  for (int i = 0; i < options.sessions; ++i) {
    calls.push_back(std::make_unique<ClientCall>(stub.get(), &cq, options.up, end));
  }
  auto all_done = [&] {
    return std::all_of(calls.begin(), calls.end(), [](const auto& c) { return c->done(); });
  };
  void* tag = nullptr;
  bool ok = false;
  while (!all_done() && cq.Next(&tag, &ok)) static_cast<Tag*>(tag)->Proceed(ok);
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = (ProcessCpuSeconds(server) - server_cpu0) + (ProcessCpuSeconds(getpid()) - client_cpu0);

  kill(server, SIGTERM);
  waitpid(server, nullptr, 0);

  std::vector<double> latencies;
  bool failed = false;
  for (const auto& call : calls) {
    failed = failed || call->failed();
    latencies.insert(latencies.end(), call->latencies_us().begin(), call->latencies_us().end());
  }
  if (failed || latencies.empty()) {
    std::fprintf(stderr, "grpc_floor: a stream failed\n");
    return 1;
  }
  const double round_trips = static_cast<double>(latencies.size());
  std::printf(
      "{\"sessions\": %d, \"seconds\": %.2f, \"round_trips\": %.0f, \"round_trips_per_s\": %.0f, "
      "\"median_us\": %.1f, \"p99_us\": %.1f, \"cpu_us_per_round_trip\": %.1f}\n",
      options.sessions, elapsed, round_trips, round_trips / elapsed, Percentile(latencies, 0.5),
      Percentile(latencies, 0.99), cpu * 1e6 / round_trips);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return 0;
}
