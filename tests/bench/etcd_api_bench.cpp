// edge-etcd-bench: the cell store's two ways into etcd v3, side by side on one etcd member
// (issue 15: "speak the v3 API over gRPC or over its JSON gateway; choose, measure, write down
// why"). Per operation, for a small put and a get (a 100-byte and a 4 KB value):
//   grpc     EtcdClient (mgmt/cell), the client the cell uses: etcd's own protos over one HTTP/2
//            connection;
//   gateway  etcd's JSON gateway on the same port: HTTP/1.1 POST /v3/kv/put and /v3/kv/range,
//            keys and values base64 in JSON, one keep-alive connection (Boost.Beast), the value
//            of a range decoded from the JSON answer.
// Reported per operation: wall-clock latency (Time), CPU of this whole process, every thread
// (CPU: gRPC's own threads included), and with --etcd-pid the CPU etcd spent (etcd_cpu_us, from
// /proc/PID/stat: the gateway runs inside etcd and forwards each request to etcd's gRPC server).
// Every benchmark runs a fixed number of iterations (--iterations, default 2000) after a warm-up
// call; nothing here starts etcd (tests/bench/etcd-api-compare does, and prints the figures).
// Usage: edge-etcd-bench --etcd=127.0.0.1:PORT [--etcd-pid=PID] [--iterations=N] [benchmark flags]
#include <benchmark/benchmark.h>
#include <edge/cell/etcd.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

struct Config {
  std::string endpoint;  // host:port of etcd's client URL (plain http)
  long etcd_pid = 0;
  benchmark::IterationCount iterations = 2000;
};
Config config;

std::string base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string unbase64(std::string_view in) {
  std::string out(3 * (in.size() / 4), '\0');
  const int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) throw std::runtime_error("gateway: a value that is not base64");
  std::size_t len = static_cast<std::size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (!in.empty() && in.back() == '=') --len;
  if (in.size() >= 2 && in[in.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

// The string value of "name" in a JSON text, first occurrence at or after `from` (etcd's answers
// carry keys and values as base64 strings: no escapes to undo).
std::optional<std::string_view> json_string(std::string_view json, std::string_view name,
                                            std::size_t from = 0) {
  const std::string pattern = "\"" + std::string(name) + "\":\"";
  const auto at = json.find(pattern, from);
  if (at == std::string_view::npos) return std::nullopt;
  const auto start = at + pattern.size();
  const auto end = json.find('"', start);
  if (end == std::string_view::npos) return std::nullopt;
  return json.substr(start, end - start);
}

// One keep-alive HTTP/1.1 connection to etcd's JSON gateway.
class Gateway {
 public:
  explicit Gateway(const std::string& endpoint) {
    const auto colon = endpoint.rfind(':');
    host_ = endpoint.substr(0, colon);
    port_ = endpoint.substr(colon + 1);
    connect();
  }

  void put(std::string_view key, std::string_view value) {
    const std::string answer =
        post("/v3/kv/put", "{\"key\":\"" + base64(key) + "\",\"value\":\"" + base64(value) + "\"}");
    if (answer.find("\"revision\":\"") == std::string::npos)
      throw std::runtime_error("gateway put: no revision in " + answer.substr(0, 200));
  }

  std::optional<std::string> get(std::string_view key) {
    const std::string answer = post("/v3/kv/range", "{\"key\":\"" + base64(key) + "\"}");
    const auto kvs = answer.find("\"kvs\":[");
    if (kvs == std::string::npos) return std::nullopt;
    const auto value = json_string(answer, "value", kvs);
    if (!value) return std::string();  // an empty value is left out of the JSON
    return unbase64(*value);
  }

  int connections() const { return connections_; }

 private:
  void connect() {
    tcp::resolver resolver(ioc_);
    stream_.emplace(ioc_);
    stream_->connect(resolver.resolve(host_, port_));
    stream_->socket().set_option(tcp::no_delay(true));
    ++connections_;
  }

  std::string post(std::string_view target, std::string body) {
    http::request<http::string_body> req{http::verb::post, beast::string_view(target.data(), target.size()),
                                         11};
    req.set(http::field::host, host_);
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    req.body() = std::move(body);
    req.prepare_payload();
    http::write(*stream_, req);
    http::response<http::string_body> res;
    http::read(*stream_, buffer_, res);
    if (res.result() != http::status::ok)
      throw std::runtime_error("gateway " + std::string(target) + ": HTTP " +
                               std::to_string(res.result_int()) + " " + res.body());
    if (!res.keep_alive()) connect();  // counted: a fair run keeps one connection
    return std::move(res.body());
  }

  std::string host_, port_;
  boost::asio::io_context ioc_;
  std::optional<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  int connections_ = 0;
};

edge::cell::EtcdClient& grpc_client() {
  static edge::cell::EtcdClient client([] {
    edge::cell::EtcdOptions o;
    o.endpoints = {config.endpoint};
    o.call_timeout = std::chrono::milliseconds(5000);
    return o;
  }());
  return client;
}

Gateway& gateway_client() {
  static Gateway gateway(config.endpoint);
  return gateway;
}

// etcd's CPU time (user + system) in microseconds, from /proc/PID/stat; 0 without --etcd-pid.
double etcd_cpu_us() {
  if (config.etcd_pid == 0) return 0;
  std::ifstream in("/proc/" + std::to_string(config.etcd_pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close == std::string::npos)
    throw std::runtime_error("etcd pid " + std::to_string(config.etcd_pid) + " is gone");
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stod(f);
    if (i == 15) stime = std::stod(f);
  }
  return (utime + stime) * 1e6 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string value_of(std::int64_t size) { return std::string(static_cast<std::size_t>(size), 'v'); }

template <class Op>
void measure(benchmark::State& state, Op&& op) {
  op();  // warm-up: the connection is up before the clock runs
  const double etcd_before = etcd_cpu_us();
  for (auto _ : state) op();
  const double etcd_after = etcd_cpu_us();
  if (config.etcd_pid != 0)
    state.counters["etcd_cpu_us"] =
        benchmark::Counter(etcd_after - etcd_before, benchmark::Counter::kAvgIterations);
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_GrpcPut(benchmark::State& state) {
  const std::string key = "/bench/grpc/put/" + std::to_string(state.range(0));
  const std::string value = value_of(state.range(0));
  measure(state, [&] { benchmark::DoNotOptimize(grpc_client().put(key, value)); });
}

void BM_GrpcGet(benchmark::State& state) {
  const std::string key = "/bench/grpc/get/" + std::to_string(state.range(0));
  const std::string value = value_of(state.range(0));
  grpc_client().put(key, value);
  measure(state, [&] {
    const auto kv = grpc_client().get(key);
    if (!kv || kv->value.size() != value.size()) state.SkipWithError("grpc get: wrong value");
  });
}

void BM_GatewayPut(benchmark::State& state) {
  const std::string key = "/bench/gateway/put/" + std::to_string(state.range(0));
  const std::string value = value_of(state.range(0));
  measure(state, [&] { gateway_client().put(key, value); });
  state.counters["connections"] = gateway_client().connections();
}

void BM_GatewayGet(benchmark::State& state) {
  const std::string key = "/bench/gateway/get/" + std::to_string(state.range(0));
  const std::string value = value_of(state.range(0));
  gateway_client().put(key, value);
  measure(state, [&] {
    const auto got = gateway_client().get(key);
    if (!got || *got != value) state.SkipWithError("gateway get: wrong value");
  });
  state.counters["connections"] = gateway_client().connections();
}

bool take_flag(std::string_view arg, std::string_view name, std::string& value) {
  if (arg.substr(0, name.size()) != name) return false;
  value = std::string(arg.substr(name.size()));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string v;
    try {
      if (take_flag(argv[i], "--etcd=", v)) {
        config.endpoint = v;
      } else if (take_flag(argv[i], "--etcd-pid=", v)) {
        config.etcd_pid = std::stol(v);
      } else if (take_flag(argv[i], "--iterations=", v)) {
        config.iterations = std::stol(v);
      } else {
        rest.push_back(argv[i]);
      }
    } catch (const std::exception&) {
      std::cerr << "edge-etcd-bench: bad value in " << argv[i] << "\n";
      return 2;
    }
  }
  if (config.endpoint.empty() || config.iterations < 1 || config.iterations > 1000000) {
    std::cerr << "usage: edge-etcd-bench --etcd=127.0.0.1:PORT [--etcd-pid=PID] [--iterations=1..1000000] "
                 "[benchmark flags]\n";
    return 2;
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 2;
  static std::vector<benchmark::internal::Benchmark*> registered;
  for (const auto& [name, fn] :
       std::vector<std::pair<const char*, void (*)(benchmark::State&)>>{{"grpc/put", BM_GrpcPut},
                                                                        {"gateway/put", BM_GatewayPut},
                                                                        {"grpc/get", BM_GrpcGet},
                                                                        {"gateway/get", BM_GatewayGet}}) {
    // Kept: the library owns them, the analyzer cannot see that across its boundary.
    registered.push_back(benchmark::RegisterBenchmark(name, fn)
                             ->Arg(100)
                             ->Arg(4096)
                             ->Iterations(config.iterations)
                             ->MeasureProcessCPUTime()
                             ->UseRealTime()
                             ->Unit(benchmark::kMicrosecond));
  }
  try {
    benchmark::RunSpecifiedBenchmarks();
  } catch (const std::exception& e) {
    std::cerr << "edge-etcd-bench: " << e.what() << "\n";
    return 1;
  }
  benchmark::Shutdown();
  return 0;
}
