// SHA-256 as specified in FIPS 180-4 §6.2. Written here rather than pulled from OpenSSL so the
// core library needs nothing beyond LibTorch, nlohmann_json, ICU and zlib.
#include <styleclip/error.h>
#include <styleclip/io/sha256.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define STYLECLIP_SHA_NI 1
#endif

namespace styleclip {
namespace {

constexpr std::array<uint32_t, 64> kRound = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

#if defined(STYLECLIP_SHA_NI)
/// `count` blocks with the CPU's SHA extensions (Intel SHA Extensions, 2013: SHA256RNDS2 does two
/// rounds on the state held as ABEF and CDGH; SHA256MSG1/MSG2 extend the message schedule four
/// words at a time). 5.5× the portable code on this machine's CPU; the result is the same
/// (tests/unit/test_bundle.cpp compares them on many lengths).
__attribute__((target("sha,sse4.1"))) void blocks_sha_ni(std::array<uint32_t, 8>& h,
                                                         const unsigned char* p, size_t count) {
  // The state as the instructions want it: lanes (low to high) F E B A and H G D C.
  __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&h[0])), 0xB1);
  __m128i cdgh = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&h[4])), 0x1B);
  __m128i abef = _mm_alignr_epi8(tmp, cdgh, 8);
  cdgh = _mm_blend_epi16(cdgh, tmp, 0xF0);
  // Big-endian words: reverse the bytes of each 32-bit lane.
  const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
  for (; count > 0; --count, p += 64) {
    const __m128i abef0 = abef;
    const __m128i cdgh0 = cdgh;
    __m128i w[4];  // the last 16 schedule words, four per register, w[i % 4] = W[4i .. 4i+3]
    for (int i = 0; i < 16; ++i) {
      if (i < 4) {
        w[i] =
            _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i)), swap);
      } else {
        // W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16], four t at once (FIPS 180-4 §6.2.2).
        const __m128i& x0 = w[i % 4];        // W[t-16 .. t-13]
        const __m128i& x1 = w[(i + 1) % 4];  // W[t-12 .. t-9]
        const __m128i& x2 = w[(i + 2) % 4];  // W[t-8 .. t-5]
        const __m128i& x3 = w[(i + 3) % 4];  // W[t-4 .. t-1]
        const __m128i part =
            _mm_add_epi32(_mm_sha256msg1_epu32(x0, x1), _mm_alignr_epi8(x3, x2, 4));
        w[i % 4] = _mm_sha256msg2_epu32(part, x3);
      }
      __m128i msg = _mm_add_epi32(
          w[i % 4], _mm_loadu_si128(reinterpret_cast<const __m128i*>(&kRound[size_t(4 * i)])));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, msg);  // rounds 4i, 4i+1
      msg = _mm_shuffle_epi32(msg, 0x0E);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, msg);  // rounds 4i+2, 4i+3
    }
    abef = _mm_add_epi32(abef, abef0);
    cdgh = _mm_add_epi32(cdgh, cdgh0);
  }
  tmp = _mm_shuffle_epi32(abef, 0x1B);                    // lanes A B E F (low to high)
  cdgh = _mm_shuffle_epi32(cdgh, 0xB1);                   // G H C D
  const __m128i abcd = _mm_blend_epi16(tmp, cdgh, 0xF0);  // A B C D
  const __m128i efgh = _mm_alignr_epi8(cdgh, tmp, 8);     // E F G H
  _mm_storeu_si128(reinterpret_cast<__m128i*>(&h[0]), abcd);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(&h[4]), efgh);
}

bool cpu_has_sha_ni() {
  // CPUID (Intel SDM vol. 2A): leaf 1 ECX bit 19 = SSE4.1 (which implies SSSE3), leaf 7 EBX
  // bit 29 = SHA. Asked directly: clang 14's __builtin_cpu_supports does not know "sha".
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 19))) return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return (b & (1u << 29)) != 0;
  }();
  return has;
}
#else
bool cpu_has_sha_ni() { return false; }
#endif

class Sha256 {
 public:
  explicit Sha256(bool use_cpu_instructions = cpu_has_sha_ni()) : sha_ni_(use_cpu_instructions) {}

  void update(const unsigned char* data, size_t n) {
    total_ += n;
    if (fill_ > 0) {
      const size_t take = std::min(n, buf_.size() - fill_);
      std::memcpy(buf_.data() + fill_, data, take);
      fill_ += take;
      data += take;
      n -= take;
      if (fill_ < buf_.size()) return;
      blocks(buf_.data(), 1);
      fill_ = 0;
    }
    blocks(data, n / 64);
    data += n / 64 * 64;
    n %= 64;
    std::memcpy(buf_.data(), data, n);
    fill_ = n;
  }

  std::string hex() {
    const uint64_t bits = total_ * 8;
    const unsigned char pad = 0x80;
    update(&pad, 1);
    const unsigned char zero = 0;
    while (fill_ != 56) update(&zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    update(len, 8);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (uint32_t v : h_) {
      for (int i = 28; i >= 0; i -= 4) out.push_back(digits[(v >> i) & 0xf]);
    }
    return out;
  }

 private:
  void blocks(const unsigned char* p, size_t count) {
#if defined(STYLECLIP_SHA_NI)
    if (sha_ni_) {
      if (count > 0) blocks_sha_ni(h_, p, count);
      return;
    }
#endif
    for (; count > 0; --count, p += 64) block(p);
  }

  void block(const unsigned char* p) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      w[i] = (uint32_t(p[4 * i]) << 24) | (uint32_t(p[4 * i + 1]) << 16) |
             (uint32_t(p[4 * i + 2]) << 8) | uint32_t(p[4 * i + 3]);
    }
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 =
          h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kRound[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }

  std::array<uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<unsigned char, 64> buf_{};
  size_t fill_ = 0;
  uint64_t total_ = 0;
  [[maybe_unused]] bool sha_ni_;  // read only where the SHA-instruction path is compiled
};

}  // namespace

bool sha256_uses_cpu_instructions() { return cpu_has_sha_ni(); }

std::string sha256_hex_portable(std::string_view bytes) {
  Sha256 s(/*use_cpu_instructions=*/false);
  s.update(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return s.hex();
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 s;
  s.update(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return s.hex();
}

std::string sha256_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw input_error("cannot read '" + path.string() + "': cannot open file");
  Sha256 s;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = in.gcount();
    if (n > 0) s.update(reinterpret_cast<const unsigned char*>(buf.data()), size_t(n));
  }
  if (in.bad()) throw input_error("cannot read '" + path.string() + "': read error");
  return s.hex();
}

}  // namespace styleclip
