// edge-hsm: operator and test tool for the lab token, key sets and an HSM self test.
#include <edge/hsm/cell_keys.h>
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/lab.h>
#include <edge/hsm/module.h>
#include <edge/hsm/signing_key.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace edge::hsm;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr const char* kUsage = R"(usage: edge-hsm [OPTIONS] COMMAND [ARGS]

Commands:
  init-lab-token                  create the SoftHSM lab token under <state>/hsm
                                  (idempotent; never overwrites a token or PIN file)
  keyset create NAME [--retain N] create a key set with version 1 (retain default 3)
  keyset rotate NAME              add version newest+1; destroy versions beyond retain
  keyset retire NAME VERSION      the HSM refuses the version from now on
  keyset list [--json]            one line per version (origin=MEMBER: a cell version
                                  imported from that member)
  keyset destroy NAME             destroy every version of the set
  signkey create NAME [--exists-ok]
                                  ECDSA P-256 signing key in the token; writes its
                                  public key to <state>/keys/NAME.pub.pem, prints the path
  signkey export NAME             write <state>/keys/NAME.pub.pem again, print the path
  signkey list                    one line per signing key
  selftest                        module, token, mechanisms, HMAC round trip
  cell init                       generate this member's identity: the RSA transport
                                  pair (moves keys) and the RSA signing pair (signs
                                  version records); prints the identity's fingerprint
  cell show [--out FILE]          print the identity's fingerprint; --out writes the
                                  identity blob (transport then signing public key,
                                  DER SubjectPublicKeyInfo each) to FILE
  cell trust MEMBER --public-key FILE --fingerprint FP --so-pin-file PATH
                                  as the token's SO: admit MEMBER (this member's own id
                                  too) by importing both public keys of its identity
                                  blob (as cell show --out writes it) as CKA_TRUSTED
                                  keys, after checking its fingerprint is FP; logs in as
                                  SO, never user
  cell peers                      one line per member: member, fingerprint, trusted
                                  (trusted: both of its keys were admitted by the SO)

Options:
  --state-dir DIR     state directory (default: $EDGE_STATE_DIR, else ./var)
  --module PATH       PKCS#11 module of a non-lab HSM (then --pin-file or --pin-env)
  --token LABEL       token label (default: edge-lab)
  --token-uri URI     RFC 7512 token URI, e.g. 'pkcs11:token=edge-lab;serial=...'
  --pin-file PATH     user PIN file (mode 0600; default: the lab's <state>/hsm/user-pin)
  --pin-env VAR       user PIN from the environment variable VAR
  --json              machine-readable output (keyset list)
  --retain N          versions kept by keyset create
  --exists-ok         signkey create: an existing key is fine (export it again)
  --fingerprint FP    cell trust: the fingerprint compared out of band (sha256:...)
  --public-key FILE   cell trust: the member's identity blob (cell show --out)
  --so-pin-file PATH  cell trust: the SO PIN file (mode 0600)
  --out FILE          cell show: where to write the identity blob
  -h, --help          this text

Exit status: 0 success, 1 failure, 2 usage error.
)";

struct UsageError {
  std::string message;
};

struct Options {
  std::optional<std::string> state_dir, module, token, token_uri, pin_file, pin_env, retain, fingerprint,
      so_pin_file, out, public_key;
  bool json = false, help = false, exists_ok = false;
  std::vector<std::string> args;
};

Options parse(int argc, char** argv) {
  Options o;
  struct ValueOption {
    const char* name;
    std::optional<std::string> Options::*field;
  };
  const ValueOption value_options[] = {
      {"--state-dir", &Options::state_dir},
      {"--module", &Options::module},
      {"--token", &Options::token},
      {"--token-uri", &Options::token_uri},
      {"--pin-file", &Options::pin_file},
      {"--pin-env", &Options::pin_env},
      {"--retain", &Options::retain},
      {"--fingerprint", &Options::fingerprint},
      {"--so-pin-file", &Options::so_pin_file},
      {"--out", &Options::out},
      {"--public-key", &Options::public_key},
  };
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (options_done || a.empty() || a[0] != '-' || a == "-") {
      o.args.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    if (a == "-h" || a == "--help") {
      o.help = true;
      continue;
    }
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (a == "--exists-ok") {
      o.exists_ok = true;
      continue;
    }
    std::string name = a, value;
    bool has_value = false;
    if (auto eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_value = true;
    }
    bool known = false;
    for (const auto& vo : value_options) {
      if (name != vo.name) continue;
      known = true;
      if (!has_value) {
        if (i + 1 >= argc) throw UsageError{name + " needs a value"};
        value = argv[++i];
      }
      if (value.empty()) throw UsageError{name + " needs a non-empty value"};
      o.*vo.field = value;
    }
    if (!known) throw UsageError{"unknown option " + name};
  }
  return o;
}

std::uint32_t parse_u32(const std::string& s, const char* what) {
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos) {
    throw UsageError{std::string(what) + " must be a positive number, not '" + s + "'"};
  }
  unsigned long long v = std::stoull(s);
  if (v == 0 || v > 0xFFFFFFFFull)
    throw UsageError{std::string(what) + " must be a positive number, not '" + s + "'"};
  return static_cast<std::uint32_t>(v);
}

std::string iso_time(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

fs::path state_dir_of(const Options& o) { return o.state_dir ? fs::path(*o.state_dir) : default_state_dir(); }

HsmConfig config_of(const Options& o) {
  HsmConfig c;
  try {
    c = tool_hsm_config({o.state_dir, o.module, o.token, o.token_uri, o.pin_file, o.pin_env});
  } catch (const std::invalid_argument& e) {
    throw UsageError{e.what()};
  }
  c.max_sessions = 2;
  return c;
}

void print_set_lines(const KeySetInfo& set) {
  for (const auto& v : set.versions) {
    std::cout << set.name << " v" << v.version << ' ' << to_string(v.state) << (v.minting ? " minting" : "")
              << " created=" << iso_time(v.created_unix);
    if (v.state == KeyState::retired && !v.retired_on.empty()) std::cout << " retired_on=" << v.retired_on;
    if (!v.origin.empty()) std::cout << " origin=" << v.origin;
    std::cout << '\n';
  }
  // Objects with a version's label and ID that the HSM did not generate: never used.
  for (const auto& r : set.refused)
    std::cout << set.name << " v" << r.version << " REFUSED reason=\"" << r.reason << "\"\n";
}

// Names are restricted to [A-Za-z0-9._-] and dates to digits, so nothing here needs escaping.
void print_json(const std::vector<KeySetInfo>& sets) {
  std::cout << "{\"key_sets\":[";
  for (std::size_t i = 0; i < sets.size(); ++i) {
    const KeySetInfo& s = sets[i];
    std::cout << (i ? "," : "") << "{\"name\":\"" << s.name << "\",\"retain\":" << s.retain
              << ",\"minting_version\":" << s.minting_version() << ",\"versions\":[";
    for (std::size_t j = 0; j < s.versions.size(); ++j) {
      const KeyVersionInfo& v = s.versions[j];
      std::cout << (j ? "," : "") << "{\"version\":" << v.version << ",\"state\":\"" << to_string(v.state)
                << "\",\"minting\":" << (v.minting ? "true" : "false") << ",\"created\":\""
                << iso_time(v.created_unix) << "\",\"created_unix\":" << v.created_unix << ",\"retired_on\":"
                << (v.retired_on.empty() ? std::string("null") : "\"" + v.retired_on + "\"")
                << ",\"origin\":" << (v.origin.empty() ? std::string("null") : "\"" + v.origin + "\"") << '}';
    }
    // Labels are "<set>/v<N>" and reasons fixed texts without quotes or backslashes.
    std::cout << "],\"refused\":[";
    for (std::size_t j = 0; j < s.refused.size(); ++j) {
      const RefusedKey& r = s.refused[j];
      std::cout << (j ? "," : "") << "{\"version\":" << r.version << ",\"label\":\"" << r.label
                << "\",\"reason\":\"" << r.reason << "\"}";
    }
    std::cout << "]}";
  }
  std::cout << "]}\n";
}

std::string version_text(const CK_VERSION& v) {
  return std::to_string(v.major) + "." + std::to_string(v.minor);
}

std::string token_flags(CK_FLAGS f) {
  std::string s;
  auto add = [&](CK_FLAGS bit, const char* name) {
    if (!(f & bit)) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(CKF_TOKEN_INITIALIZED, "initialized");
  add(CKF_USER_PIN_INITIALIZED, "user-pin-initialized");
  add(CKF_LOGIN_REQUIRED, "login-required");
  add(CKF_RNG, "rng");
  add(CKF_WRITE_PROTECTED, "write-protected");
  add(CKF_PROTECTED_AUTHENTICATION_PATH, "protected-auth-path");
  add(CKF_USER_PIN_LOCKED, "user-pin-locked");
  add(CKF_USER_PIN_COUNT_LOW, "user-pin-count-low");
  return s;
}

int cmd_init_lab_token(const Options& o) {
  if (o.module || o.pin_file || o.pin_env || o.token_uri) {
    throw UsageError{
        "init-lab-token provisions the SoftHSM lab token only (no --module/--pin-*/--token-uri)"};
  }
  LabToken t = provision_lab_token(state_dir_of(o), o.token ? *o.token : std::string(kLabTokenLabel));
  std::cout << "token " << t.label << " serial " << t.serial
            << (t.token_created ? " created" : " already present") << '\n'
            << "SOFTHSM2_CONF=" << t.paths.softhsm_conf.string() << '\n'
            << "user PIN file: " << t.paths.user_pin.string() << (t.pins_created ? " (new)" : "") << '\n';
  return kExitOk;
}

int cmd_keyset(const Options& o) {
  const auto& a = o.args;
  if (a.size() < 2) throw UsageError{"keyset needs a subcommand: create, rotate, retire, list, destroy"};
  const std::string& sub = a[1];
  auto want_args = [&](std::size_t n, const char* shape) {
    if (a.size() != n) throw UsageError{std::string("usage: edge-hsm keyset ") + shape};
  };
  if (o.retain && sub != "create") throw UsageError{"--retain applies to keyset create only"};
  if (o.json && sub != "list") throw UsageError{"--json applies to keyset list only"};

  // Validate the arguments before touching the HSM.
  std::uint32_t retain = kDefaultRetain, version = 0;
  if (sub == "create") {
    want_args(3, "create NAME [--retain N]");
    if (o.retain) retain = parse_u32(*o.retain, "--retain");
    if (retain > kMaxRetain) throw UsageError{"--retain must be at most " + std::to_string(kMaxRetain)};
  } else if (sub == "rotate" || sub == "destroy") {
    want_args(3, sub == "rotate" ? "rotate NAME" : "destroy NAME");
  } else if (sub == "retire") {
    want_args(4, "retire NAME VERSION");
    std::string v = a[3];
    if (!v.empty() && (v[0] == 'v' || v[0] == 'V')) v = v.substr(1);  // "v2" reads as 2
    version = parse_u32(v, "VERSION");
  } else if (sub == "list") {
    want_args(2, "list [--json]");
  } else {
    throw UsageError{"unknown keyset subcommand '" + sub + "'"};
  }
  if (a.size() >= 3 && !valid_key_set_name(a[2])) {
    throw UsageError{"invalid key set name '" + a[2] + "': use 1..64 characters of A-Z a-z 0-9 . _ -"};
  }

  Hsm hsm(config_of(o));
  KeySetManager& ks = hsm.keysets();
  if (sub == "create") {
    print_set_lines(ks.create(a[2], retain));
  } else if (sub == "rotate") {
    ks.rotate(a[2]);
    print_set_lines(ks.get(a[2]));
  } else if (sub == "retire") {
    ks.retire(a[2], version);
    print_set_lines(ks.get(a[2]));
  } else if (sub == "destroy") {
    const std::size_t n = ks.get(a[2]).versions.size();
    ks.destroy(a[2]);
    std::cout << "destroyed key set " << a[2] << " (" << n << (n == 1 ? " version" : " versions") << ")\n";
  } else {
    const auto sets = ks.list();
    if (o.json) {
      print_json(sets);
    } else {
      for (const auto& s : sets) print_set_lines(s);
    }
  }
  return kExitOk;
}

int cmd_signkey(const Options& o) {
  const auto& a = o.args;
  if (a.size() < 2) throw UsageError{"signkey needs a subcommand: create, export, list"};
  const std::string& sub = a[1];
  if (o.exists_ok && sub != "create") throw UsageError{"--exists-ok applies to signkey create only"};
  if (o.json || o.retain) throw UsageError{"--json and --retain do not apply to signkey"};
  if (sub == "create" || sub == "export") {
    if (a.size() != 3) throw UsageError{"usage: edge-hsm signkey " + sub + " NAME"};
    if (!valid_signing_key_name(a[2])) {
      throw UsageError{"invalid signing key name '" + a[2] + "': use 1..64 characters of A-Z a-z 0-9 . _ -"};
    }
  } else if (sub == "list") {
    if (a.size() != 2) throw UsageError{"usage: edge-hsm signkey list"};
  } else {
    throw UsageError{"unknown signkey subcommand '" + sub + "'"};
  }

  Hsm hsm(config_of(o));
  SigningKeys keys(hsm);
  if (sub == "list") {
    for (const SigningKeyInfo& k : keys.list())
      std::cout << k.name << " ecdsa-p256 created=" << iso_time(k.created_unix) << '\n';
    return kExitOk;
  }
  const bool create = sub == "create" && !(o.exists_ok && keys.exists(a[2]));
  const SigningKeyInfo key = create ? keys.create(a[2]) : keys.get(a[2]);
  // Only the public half leaves the HSM: verifiers get this file.
  std::cout << write_public_key_pem(public_key_dir(state_dir_of(o)), key).string() << '\n';
  return kExitOk;
}

int cmd_selftest(const Options& o) {
  if (o.args.size() != 1) throw UsageError{"usage: edge-hsm selftest"};
  Hsm hsm(config_of(o));
  SelfTestReport r = hsm.self_test();
  std::cout << "module: " << r.module_path << '\n'
            << "  library: " << r.module.description << ' ' << version_text(r.module.library_version) << " ("
            << r.module.manufacturer << "), cryptoki " << version_text(r.module.cryptoki_version) << '\n'
            << "token: label=" << r.token.label << " serial=" << r.token.serial << " slot=" << r.slot_id
            << '\n'
            << "  " << r.token.manufacturer << ' ' << r.token.model << ", hardware "
            << version_text(r.token.hardware_version) << ", firmware "
            << version_text(r.token.firmware_version) << '\n'
            << "  flags: " << token_flags(r.token.flags) << '\n'
            << "mechanisms: " << r.mechanisms.size() << " supported\n"
            << "  CKM_SHA256_HMAC: " << (r.has_sha256_hmac ? "yes" : "NO");
  if (r.has_sha256_hmac) {
    // Units are the module's (SoftHSM: bytes for HMAC keys).
    std::cout << " (key size " << r.sha256_hmac_info.ulMinKeySize << ".." << r.sha256_hmac_info.ulMaxKeySize
              << ")";
  }
  std::cout << '\n'
            << "  CKM_GENERIC_SECRET_KEY_GEN: " << (r.has_generic_secret_key_gen ? "yes" : "NO") << '\n'
            << "  all:";
  for (CK_MECHANISM_TYPE m : r.mechanisms) std::cout << ' ' << mechanism_name(m);
  std::cout << '\n'
            << "round trip: " << (r.round_trip_ok ? "ok" : "FAILED") << ": " << r.round_trip_detail << " ("
            << r.round_trip_time.count() << " us)\n"
            << "selftest: " << (r.ok() ? "ok" : "FAILED") << '\n';
  if (!r.ok()) {
    std::cerr << "edge-hsm: selftest failed: "
              << (!r.has_sha256_hmac || !r.has_generic_secret_key_gen ? "required mechanisms missing"
                                                                      : r.round_trip_detail)
              << '\n';
    return kExitFailure;
  }
  return kExitOk;
}

int cmd_cell(const Options& o) {
  const auto& a = o.args;
  if (a.size() < 2) throw UsageError{"cell needs a subcommand: init, show, trust, peers"};
  const std::string& sub = a[1];
  const bool trust = sub == "trust";
  if ((o.fingerprint || o.so_pin_file || o.public_key) && !trust)
    throw UsageError{"--fingerprint, --public-key and --so-pin-file apply to cell trust only"};
  if (o.out && sub != "show") throw UsageError{"--out applies to cell show only"};
  if (o.json || o.retain || o.exists_ok)
    throw UsageError{"--json, --retain and --exists-ok do not apply to cell"};
  if (trust) {
    constexpr const char* kTrustUsage =
        "usage: edge-hsm cell trust MEMBER --public-key FILE --fingerprint FP --so-pin-file PATH";
    if (a.size() != 3 || !o.fingerprint || !o.so_pin_file || !o.public_key) throw UsageError{kTrustUsage};
    const std::string& member = a[2];
    if (!valid_member_id(member))
      throw UsageError{"invalid member id '" + member + "': use 1..64 characters of A-Z a-z 0-9 . _ -"};
    std::ifstream f(*o.public_key, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read " + *o.public_key);
    const std::vector<std::uint8_t> identity((std::istreambuf_iterator<char>(f)),
                                             std::istreambuf_iterator<char>());
    if (identity.empty() || identity.size() > 8192)
      throw std::runtime_error(*o.public_key + " is not an identity file");
    const HsmConfig c = config_of(o);
    // No Hsm here: it would log in as the user, and PKCS#11 allows one user type per application.
    // Single-threaded tool, before the module is loaded (as Hsm does it).
    if (!c.softhsm2_conf.empty())
      ::setenv("SOFTHSM2_CONF", c.softhsm2_conf.c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
    Module module(c.module_path);
    const SecretString so = read_pin(PinSource{PinSource::Kind::file, *o.so_pin_file});
    admit_member(module, c.token, so, member, identity, *o.fingerprint);
    std::cout << "member " << member << " admitted: " << *o.fingerprint << '\n';
    return kExitOk;
  }
  if (a.size() != 2) throw UsageError{"usage: edge-hsm cell " + sub};
  if (sub != "init" && sub != "show" && sub != "peers")
    throw UsageError{"unknown cell subcommand '" + sub + "'"};
  Hsm hsm(config_of(o));
  CellKeys cell(hsm);
  if (sub == "peers") {
    for (const PeerKey& p : cell.peers())
      std::cout << p.member << ' ' << p.fingerprint << (p.trusted ? " trusted" : " not-trusted") << '\n';
    return kExitOk;
  }
  const TransportPublicKey k = sub == "init" ? cell.create_transport_key() : cell.transport_public_key();
  if (o.out) {
    std::ofstream f(*o.out, std::ios::binary | std::ios::trunc);
    const std::vector<std::uint8_t> identity = k.identity();
    f.write(reinterpret_cast<const char*>(identity.data()), static_cast<std::streamsize>(identity.size()));
    f.close();
    if (!f) throw std::runtime_error("cannot write " + *o.out);
  }
  std::cout << "fingerprint " << k.fingerprint << '\n';
  return kExitOk;
}

int run(int argc, char** argv) {
  Options o = parse(argc, argv);
  if (o.help) {
    std::cout << kUsage;
    return kExitOk;
  }
  if (o.args.empty()) throw UsageError{"no command (try --help)"};
  const std::string& cmd = o.args[0];
  if (cmd == "init-lab-token") {
    if (o.args.size() != 1) throw UsageError{"usage: edge-hsm init-lab-token"};
    return cmd_init_lab_token(o);
  }
  if (o.exists_ok && cmd != "signkey") throw UsageError{"--exists-ok applies to signkey create only"};
  if (cmd == "keyset") return cmd_keyset(o);
  if (cmd == "signkey") return cmd_signkey(o);
  if (cmd == "selftest") return cmd_selftest(o);
  if (cmd == "cell") return cmd_cell(o);
  if (cmd == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  throw UsageError{"unknown command '" + cmd + "' (try --help)"};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "edge-hsm: " << e.message << '\n';
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "edge-hsm: " << e.what() << '\n';
    return kExitFailure;
  }
}
