// src/models/tokenizer.cpp — CLIP's byte-level BPE tokenizer; the design note is in tokenizer.h.
//
// Sources: openai/CLIP `clip/simple_tokenizer.py` (vocabulary layout, bytes_to_unicode, cleaning
// order, pre-tokenisation regex, bpe(), decode()) and CPython's `html/__init__.py` (unescape).

#include <styleclip/models/tokenizer.h>

#include <styleclip/error.h>

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/regex.h>
#include <unicode/unistr.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace styleclip {
namespace {

namespace fs = std::filesystem;

constexpr char32_t kReplacementChar = 0xFFFD;
constexpr std::string_view kEndOfWord = "</w>";
constexpr std::string_view kStartOfText = "<|startoftext|>";
constexpr std::string_view kEndOfText = "<|endoftext|>";

// Texts longer than this are refused: ICU strings are indexed by int32_t, and no prompt comes
// close.
constexpr std::size_t kMaxTextBytes = std::size_t{1} << 26;

// The reference caches every word forever; we cap the cache so a long-running process that
// tokenizes many distinct texts keeps bounded memory. Results do not depend on the cache.
constexpr std::size_t kMaxCacheEntries = std::size_t{1} << 16;

// ------------------------------------------------------------------------------------------------
// UTF-8

/// One decoding step: a code point, or (when !valid) the length of the ill-formed subsequence.
struct Utf8Step {
  char32_t code_point;
  std::size_t length;
  bool valid;
};

/// Decodes the sequence at `pos` following Unicode's Table 3-7 (no overlongs, surrogates or values
/// above U+10FFFF). An ill-formed sequence consumes its "maximal subpart" (Unicode §3.9, U+FFFD
/// substitution), which is the unit Python's `bytes.decode("utf-8", errors="replace")` replaces.
Utf8Step next_utf8(std::string_view s, std::size_t pos) {
  const auto lead = static_cast<unsigned char>(s[pos]);
  if (lead < 0x80) return {lead, 1, true};
  int trail = 0;
  unsigned char first_min = 0x80;
  unsigned char first_max = 0xBF;
  char32_t cp = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    trail = 1;
    cp = lead & 0x1Fu;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    trail = 2;
    cp = lead & 0x0Fu;
    if (lead == 0xE0) first_min = 0xA0;  // overlong
    if (lead == 0xED) first_max = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    trail = 3;
    cp = lead & 0x07u;
    if (lead == 0xF0) first_min = 0x90;  // overlong
    if (lead == 0xF4) first_max = 0x8F;  // above U+10FFFF
  } else {
    return {kReplacementChar, 1, false};
  }
  std::size_t length = 1;
  for (int k = 0; k < trail; ++k) {
    if (pos + length >= s.size()) return {kReplacementChar, length, false};
    const auto b = static_cast<unsigned char>(s[pos + length]);
    const unsigned char lo = k == 0 ? first_min : 0x80;
    const unsigned char hi = k == 0 ? first_max : 0xBF;
    if (b < lo || b > hi) return {kReplacementChar, length, false};
    cp = (cp << 6) | (b & 0x3Fu);
    ++length;
  }
  return {cp, length, true};
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string to_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

/// `bytes` written as \xNN escapes, for quoting ill-formed input in messages.
std::string escape_bytes(std::string_view bytes) {
  std::string out;
  for (char c : bytes) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
    out += buf;
  }
  return out;
}

/// The position and bytes of the first ill-formed sequence, or npos when `s` is valid UTF-8.
std::pair<std::size_t, std::size_t> find_invalid_utf8(std::string_view s) {
  for (std::size_t pos = 0; pos < s.size();) {
    const Utf8Step step = next_utf8(s, pos);
    if (!step.valid) return {pos, step.length};
    pos += step.length;
  }
  return {std::string_view::npos, 0};
}

/// Strict decoding of user text: ill-formed UTF-8 is an input error, never silently replaced.
std::u32string decode_text(std::string_view text) {
  if (text.size() > kMaxTextBytes) {
    throw input_error("text is too long: '" + std::to_string(text.size()) +
                      " bytes' is over the limit of " + std::to_string(kMaxTextBytes) + " bytes");
  }
  const auto [bad_pos, bad_len] = find_invalid_utf8(text);
  if (bad_pos != std::string_view::npos) {
    throw input_error("text is not valid UTF-8: ill-formed sequence '" +
                      escape_bytes(text.substr(bad_pos, bad_len)) + "' at byte " +
                      std::to_string(bad_pos));
  }
  std::u32string out;
  out.reserve(text.size());
  for (std::size_t pos = 0; pos < text.size();) {
    const Utf8Step step = next_utf8(text, pos);
    out.push_back(step.code_point);
    pos += step.length;
  }
  return out;
}

/// Python's `bytes.decode("utf-8", errors="replace")`, producing UTF-8.
std::string decode_utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t pos = 0; pos < bytes.size();) {
    const Utf8Step step = next_utf8(bytes, pos);
    if (step.valid) {
      out.append(bytes.substr(pos, step.length));
    } else {
      append_utf8(out, kReplacementChar);
    }
    pos += step.length;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// ICU glue

void check_icu(UErrorCode status, const char* what) {
  if (U_FAILURE(status)) {
    throw std::runtime_error(std::string("tokenizer: ICU failed to ") + what + ": " +
                             u_errorName(status));
  }
}

icu::UnicodeString to_icu(std::u32string_view s) {
  return icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(s.data()),
                                       static_cast<int32_t>(s.size()));
}

std::u32string from_icu(const icu::UnicodeString& s) {
  std::u32string out(static_cast<std::size_t>(s.countChar32()), U'\0');
  UErrorCode status = U_ZERO_ERROR;
  s.toUTF32(reinterpret_cast<UChar32*>(out.data()), static_cast<int32_t>(out.size()), status);
  check_icu(status, "convert text to UTF-32");
  return out;
}

// ------------------------------------------------------------------------------------------------
// bytes_to_unicode (clip/simple_tokenizer.py): every byte gets a visible, non-space symbol so
// that BPE can run on strings. Bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' keep their code point; the
// other 68 bytes take U+0100, U+0101, ... in byte order.

constexpr char32_t kMaxByteSymbol = 0x100 + 68 - 1;

bool keeps_own_code_point(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

const std::array<char32_t, 256>& byte_to_symbol() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) t[b] = keeps_own_code_point(b) ? char32_t(b) : next++;
    return t;
  }();
  return table;
}

/// The byte that symbol `c` stands for, or -1 when `c` is not one of the 256 symbols.
int symbol_to_byte(char32_t c) {
  static const std::array<int, kMaxByteSymbol + 1> table = [] {
    std::array<int, kMaxByteSymbol + 1> t{};
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[byte_to_symbol()[b]] = b;
    return t;
  }();
  return c <= kMaxByteSymbol ? table[c] : -1;
}

// ------------------------------------------------------------------------------------------------
// Cleaning (clip/simple_tokenizer.py: basic_clean, whitespace_clean, then .lower())

/// Python's `str.isspace` (general category Zs, or bidi class WS/B/S), used by `str.strip()`.
/// It is `\p{White_Space}` plus U+001C..U+001F.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

/// `\s` of the `regex` module that the reference imports as `re`: Unicode White_Space. Note that
/// U+001C..U+001F are stripped at the ends by `str.strip` but not collapsed in the middle.
bool is_regex_space(char32_t c) { return is_python_space(c) && !(c >= 0x1C && c <= 0x1F); }

// One entry of the HTML5 named character reference table.
struct NamedEntity {
  std::string_view name;
  std::string_view utf8;
};

constexpr NamedEntity kNamedEntities[] = {
#include "html_entities.inc"
};

/// The replacement for `name` (ASCII, ";" included when present), or nullptr when unknown.
const std::string_view* find_entity(std::u32string_view name) {
  std::string key;
  for (char32_t c : name) {
    if (c >= 0x80) return nullptr;  // every name in the table is ASCII
    key.push_back(static_cast<char>(c));
  }
  const auto* end = std::end(kNamedEntities);
  const auto* it = std::lower_bound(
      std::begin(kNamedEntities), end, key,
      [](const NamedEntity& e, const std::string& k) { return e.name < std::string_view(k); });
  return it != end && it->name == key ? &it->utf8 : nullptr;
}

/// What `&#<num>;` turns into under CPython's `html._replace_charref` (the HTML5 rules): the
/// Windows-1252 reading of C1 controls, U+FFFD for NUL, surrogates and out-of-range values, and
/// nothing for other control characters and noncharacters.
std::u32string numeric_reference(char32_t num) {
  // _invalid_charrefs for 0x80..0x9F; 0 marks the five that map to themselves.
  static constexpr char32_t kWindows1252[32] = {
      0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
      0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
      0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};
  if (num == 0x00) return {kReplacementChar};
  if (num == 0x0D) return {U'\r'};
  if (num >= 0x80 && num <= 0x9F) {
    const char32_t mapped = kWindows1252[num - 0x80];
    return {mapped != 0 ? mapped : num};
  }
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return {kReplacementChar};
  const bool invalid = (num >= 0x01 && num <= 0x08) || num == 0x0B ||
                       (num >= 0x0E && num <= 0x1F) || num == 0x7F ||
                       (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE;
  if (invalid) return {};
  return {num};
}

bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }

int hex_value(char32_t c) {
  if (c >= '0' && c <= '9') return static_cast<int>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<int>(c - 'a' + 10);
  if (c >= 'A' && c <= 'F') return static_cast<int>(c - 'A' + 10);
  return -1;
}

/// Tries CPython's `#[0-9]+;?` and `#[xX][0-9a-fA-F]+;?` at `pos` (just after '&'). On success
/// appends the replacement and returns the number of characters matched, else 0.
std::size_t unescape_numeric(std::u32string_view s, std::size_t pos, std::u32string& out) {
  if (pos >= s.size() || s[pos] != U'#') return 0;
  std::size_t i = pos + 1;
  int base = 10;
  if (i < s.size() && (s[i] == U'x' || s[i] == U'X')) {
    base = 16;
    ++i;
  }
  const std::size_t digits_begin = i;
  // Python's int() is unbounded; saturating just above U+10FFFF gives the same replacement.
  char32_t num = 0;
  while (i < s.size()) {
    const int d =
        base == 10 ? (is_ascii_digit(s[i]) ? static_cast<int>(s[i] - '0') : -1) : hex_value(s[i]);
    if (d < 0) break;
    num = std::min<char32_t>(num * base + static_cast<char32_t>(d), 0x110000);
    ++i;
  }
  if (i == digits_begin) return 0;
  if (i < s.size() && s[i] == U';') ++i;
  out += numeric_reference(num);
  return i - pos;
}

/// Tries CPython's `[^\t\n\f <&#;]{1,32};?` at `pos`: the whole name if known, else the longest
/// known prefix of at least two characters (legacy names such as "amp" work without ';' and may be
/// followed by other text), else the text stays as it was. Returns the characters matched.
std::size_t unescape_named(std::u32string_view s, std::size_t pos, std::u32string& out) {
  const auto is_name_char = [](char32_t c) {
    return c != U'\t' && c != U'\n' && c != U'\f' && c != U' ' && c != U'<' && c != U'&' &&
           c != U'#' && c != U';';
  };
  std::size_t end = pos;
  while (end < s.size() && end - pos < 32 && is_name_char(s[end])) ++end;
  if (end == pos) return 0;
  if (end < s.size() && s[end] == U';') ++end;
  const std::u32string_view name = s.substr(pos, end - pos);
  if (const auto* value = find_entity(name)) {
    out += decode_text(*value);
    return name.size();
  }
  for (std::size_t x = name.size() - 1; x >= 2; --x) {
    if (const auto* value = find_entity(name.substr(0, x))) {
      out += decode_text(*value);
      out += name.substr(x);
      return name.size();
    }
  }
  out += U'&';
  out += name;
  return name.size();
}

/// CPython's `html.unescape`: numeric and named character references per HTML5.
std::u32string html_unescape(std::u32string_view s) {
  if (s.find(U'&') == std::u32string_view::npos) return std::u32string(s);
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] != U'&') {
      out.push_back(s[i++]);
      continue;
    }
    std::size_t matched = unescape_numeric(s, i + 1, out);
    if (matched == 0) matched = unescape_named(s, i + 1, out);
    if (matched == 0) out.push_back(U'&');
    i += 1 + matched;
  }
  return out;
}

/// `str.strip()`.
std::u32string_view strip(std::u32string_view s) {
  std::size_t begin = 0;
  std::size_t end = s.size();
  while (begin < end && is_python_space(s[begin])) ++begin;
  while (end > begin && is_python_space(s[end - 1])) --end;
  return s.substr(begin, end - begin);
}

/// `regex.sub(r'\s+', ' ', s)`.
std::u32string collapse_whitespace(std::u32string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    if (is_regex_space(s[i])) {
      out.push_back(U' ');
      while (i < s.size() && is_regex_space(s[i])) ++i;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

/// The whole cleaning chain; returns the lower-cased text ready for pre-tokenisation.
icu::UnicodeString clean(std::string_view text) {
  const std::u32string decoded = decode_text(text);

  // Stand-in for ftfy.fix_text: NFC only (see tokenizer.h).
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  check_icu(status, "load the NFC normaliser");
  const icu::UnicodeString normalised = nfc->normalize(to_icu(decoded), status);
  check_icu(status, "normalise text to NFC");

  std::u32string s = html_unescape(html_unescape(from_icu(normalised)));
  s = collapse_whitespace(strip(s));
  icu::UnicodeString result = to_icu(strip(s));
  // str.lower(): full, language-independent case mapping (root locale).
  result.toLower(icu::Locale::getRoot());
  return result;
}

// ------------------------------------------------------------------------------------------------
// Reading the merges file

/// System messages ("Permission denied") in the project's lower-case grammar.
std::string lower_first(std::string message) {
  if (!message.empty() && message[0] >= 'A' && message[0] <= 'Z') message[0] += 'a' - 'A';
  return message;
}

[[noreturn]] void throw_vocabulary_error(const fs::path& path, const std::string& cause) {
  throw bundle_error("cannot read vocabulary '" + path.string() + "': " + cause);
}

/// The decompressed contents of a gzip file; zlib would silently pass plain files through, so the
/// magic number is checked first, and a truncated stream (Z_BUF_ERROR) counts as corrupt.
std::string read_gzip(const fs::path& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (st.type() == fs::file_type::not_found) throw_vocabulary_error(path, "file does not exist");
  if (ec) throw_vocabulary_error(path, lower_first(ec.message()));
  if (fs::is_directory(st)) throw_vocabulary_error(path, "is a directory, expected a file");

  unsigned char magic[2] = {0, 0};
  {
    std::ifstream raw(path, std::ios::binary);
    if (!raw) throw_vocabulary_error(path, lower_first(std::strerror(errno)));
    raw.read(reinterpret_cast<char*>(magic), 2);
    if (raw.gcount() == 0) throw_vocabulary_error(path, "file is empty");
    if (raw.gcount() < 2 || magic[0] != 0x1F || magic[1] != 0x8B) {
      throw_vocabulary_error(path, "not a gzip file");
    }
  }

  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw_vocabulary_error(path, lower_first(std::strerror(errno)));
  std::string data;
  std::array<char, 1 << 16> buffer{};
  int n = 0;
  while ((n = gzread(file, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0) {
    data.append(buffer.data(), static_cast<std::size_t>(n));
  }
  int err = Z_OK;
  const char* message = gzerror(file, &err);
  const std::string zlib_message = message != nullptr ? message : "";
  gzclose_r(file);
  if (n < 0 || err != Z_OK) {
    if (err == Z_BUF_ERROR) throw_vocabulary_error(path, "gzip data is truncated");
    throw_vocabulary_error(path, "gzip data is corrupt (" + zlib_message + ")");
  }
  if (data.empty()) throw_vocabulary_error(path, "file is empty once decompressed");
  return data;
}

/// A line quoted for a message, shortened when long.
std::string quote_line(std::string_view line) {
  constexpr std::size_t kMax = 60;
  std::size_t cut = std::min(line.size(), kMax);
  while (cut < line.size() && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
  std::string shown(line.substr(0, cut));  // cut at a character boundary
  if (cut < line.size()) shown += "...";
  return "'" + shown + "'";
}

bool is_field_separator(char c) {
  // The ASCII part of Python's str.split(); other whitespace is outside the byte alphabet anyway.
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || (c >= 0x1C && c <= 0x1F);
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_field_separator(line[i])) ++i;
    const std::size_t begin = i;
    while (i < line.size() && !is_field_separator(line[i])) ++i;
    if (i > begin) fields.push_back(line.substr(begin, i - begin));
  }
  return fields;
}

/// True when every character of `s` (valid UTF-8) is one of the 256 byte symbols.
bool in_byte_alphabet(std::string_view s) {
  for (std::size_t pos = 0; pos < s.size();) {
    const Utf8Step step = next_utf8(s, pos);
    if (symbol_to_byte(step.code_point) < 0) return false;
    pos += step.length;
  }
  return true;
}

/// Merge lines 1..max_merges as (left, right) pairs, in rank order.
std::vector<std::pair<std::string, std::string>> parse_merges(const fs::path& path,
                                                              const std::string& data,
                                                              int max_merges) {
  // The reference decodes the whole file as UTF-8 before slicing, so any bad byte is fatal there.
  const auto [bad_pos, bad_len] = find_invalid_utf8(data);
  if (bad_pos != std::string::npos) {
    throw_vocabulary_error(path, "not UTF-8 text: ill-formed sequence '" +
                                     escape_bytes(std::string_view(data).substr(bad_pos, bad_len)) +
                                     "' at byte " + std::to_string(bad_pos));
  }
  std::vector<std::pair<std::string, std::string>> merges;
  const std::string_view text(data);
  std::size_t line_begin = text.find('\n');  // line 0 is a header ("#version: 0.2")
  std::size_t line_number = 0;
  while (line_begin != std::string_view::npos && static_cast<int>(merges.size()) < max_merges) {
    ++line_begin;
    ++line_number;
    std::size_t line_end = text.find('\n', line_begin);
    if (line_end == std::string_view::npos) line_end = text.size();
    const std::string_view line = text.substr(line_begin, line_end - line_begin);
    // The empty "line" after a final newline is not a merge (the reference would add an empty
    // token for it when the file is shorter than max_merges; we do not).
    if (line.empty() && line_end == text.size()) break;
    const auto fields = split_fields(line);
    if (fields.size() != 2) {
      throw_vocabulary_error(path, "line " + std::to_string(line_number + 1) + " " +
                                       quote_line(line) + " is not a merge of two symbols");
    }
    if (!in_byte_alphabet(fields[0]) || !in_byte_alphabet(fields[1])) {
      throw_vocabulary_error(path, "line " + std::to_string(line_number + 1) + " " +
                                       quote_line(line) +
                                       " has characters outside the byte alphabet");
    }
    merges.emplace_back(std::string(fields[0]), std::string(fields[1]));
    line_begin = line_end < text.size() ? line_end : std::string_view::npos;
  }
  if (merges.empty()) throw_vocabulary_error(path, "no merges after the header line");
  return merges;
}

/// `literal` as an ICU pattern that matches it the way Python's `regex` does under IGNORECASE
/// (simple case folding): an ASCII letter matches either case, and "s" also matches "ſ" (U+017F).
std::string ignore_case(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (c >= 'a' && c <= 'z') {
      out += '[';
      out += c;
      out += static_cast<char>(c - 'a' + 'A');
      if (c == 's') out += "\\x{17F}";
      out += ']';
    } else if (c == '|') {
      out += "\\|";
    } else {
      out += c;
    }
  }
  return out;
}

/// The reference's pre-tokenisation pattern, compiled there with re.IGNORECASE:
///   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
/// rewritten for ICU so that it matches the same strings as Python's `regex` module:
/// - ICU's case-insensitive flag would also apply case closure to the classes (and full case
///   folding to literals, so "ﬆ" would match "st"), so only the literals are made caseless.
/// - Under IGNORECASE, `regex` makes the negated class reject U+0345 (COMBINING GREEK
///   YPOGEGRAMMENI, whose case variants are letters) while `[\p{L}]` does not accept it either,
///   so the reference silently drops that character; excluding it here does the same.
/// - `\s` in `regex` is White_Space, which differs from ICU's `\s`; the property is named instead.
std::string pretokenizer_pattern() {
  std::string pattern;
  const std::string_view literals[] = {kStartOfText, kEndOfText, "'s",  "'t", "'re",
                                       "'ve",        "'m",       "'ll", "'d"};
  for (std::string_view literal : literals) {
    pattern += ignore_case(literal);
    pattern += '|';
  }
  pattern += R"([\p{L}]+|[\p{N}]|[^\p{White_Space}\p{L}\p{N}\x{345}]+)";
  return pattern;
}

/// The bytes a vocabulary string (all byte symbols, validated at load) stands for.
std::string symbols_to_bytes(std::string_view symbols) {
  std::string out;
  out.reserve(symbols.size());
  for (std::size_t pos = 0; pos < symbols.size();) {
    const Utf8Step step = next_utf8(symbols, pos);
    out.push_back(static_cast<char>(symbol_to_byte(step.code_point)));
    pos += step.length;
  }
  return out;
}

std::uint64_t pair_key(int64_t left, int64_t right) {
  return (static_cast<std::uint64_t>(left) << 32) | static_cast<std::uint64_t>(right);
}

}  // namespace

// --------------------------------------------------------------------------------------------------

class Tokenizer::Impl {
 public:
  Impl(const fs::path& path, int max_merges);

  /// The ids of one pre-token (UTF-8): the reference's `bpe()` followed by the encoder lookup.
  std::vector<int64_t> word_ids(const std::string& word) const;

  /// Throws `input_error` unless 0 <= id < vocab.size().
  void check_id(int64_t id) const;

  struct Merge {
    int rank;
    int64_t merged;
  };

  std::vector<std::string> vocab;        // byte-symbol form (UTF-8), index = id
  std::vector<std::string> token_bytes;  // the raw bytes each id stands for (for decode)
  std::unordered_map<std::uint64_t, Merge> merge_table;  // (left id, right id) → rank, result
  std::array<int64_t, 256> byte_id{};                    // symbol of a byte inside a word
  std::array<int64_t, 256> byte_end_id{};                // the same with "</w>" (last in a word)
  int64_t start_id = 0;
  int64_t end_id = 0;
  std::unique_ptr<icu::RegexPattern> pretokenizer;  // the reference's `self.pat`

 private:
  std::vector<int64_t> run_bpe(const std::string& word) const;

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

Tokenizer::Impl::Impl(const fs::path& path, int max_merges) {
  const std::string data = read_gzip(path);
  const auto merges = parse_merges(path, data, max_merges);

  // Vocabulary order from the reference: byte symbols, the same with "</w>", merges, specials.
  // The byte symbols come in `bytes_to_unicode()`'s insertion order: the 188 bytes that keep their
  // code point, then the 68 moved to U+0100.., which is increasing code-point order ('!' is id 0).
  std::array<char32_t, 256> symbols = byte_to_symbol();
  std::sort(symbols.begin(), symbols.end());
  vocab.reserve(512 + merges.size() + 2);
  for (char32_t c : symbols) vocab.push_back(to_utf8(std::u32string(1, c)));
  for (int b = 0; b < 256; ++b) vocab.push_back(vocab[b] + std::string(kEndOfWord));
  for (const auto& [left, right] : merges) vocab.push_back(left + right);
  vocab.emplace_back(kStartOfText);
  vocab.emplace_back(kEndOfText);

  // `dict(zip(vocab, range(len(vocab))))`: a string listed twice keeps its last id.
  std::unordered_map<std::string, int64_t> encoder;
  encoder.reserve(vocab.size());
  for (std::size_t id = 0; id < vocab.size(); ++id) {
    encoder[vocab[id]] = static_cast<int64_t>(id);
  }
  for (int b = 0; b < 256; ++b) {
    const std::string symbol = to_utf8(std::u32string(1, byte_to_symbol()[b]));
    byte_id[b] = encoder.at(symbol);
    byte_end_id[b] = encoder.at(symbol + std::string(kEndOfWord));
  }
  start_id = static_cast<int64_t>(vocab.size()) - 2;
  end_id = static_cast<int64_t>(vocab.size()) - 1;

  // Every symbol the reference's bpe() ever holds is a vocabulary string, so merges can work on
  // ids. A merge whose halves are not both in the vocabulary can never apply and is dropped. A
  // repeated pair keeps its last rank, as `dict(zip(merges, range(len(merges))))` does.
  merge_table.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto l = encoder.find(left);
    const auto r = encoder.find(right);
    if (l == encoder.end() || r == encoder.end()) continue;
    merge_table[pair_key(l->second, r->second)] = {static_cast<int>(rank),
                                                   encoder.at(left + right)};
  }

  token_bytes.reserve(vocab.size());
  for (const auto& entry : vocab) token_bytes.push_back(symbols_to_bytes(entry));

  UParseError parse_error{};
  UErrorCode status = U_ZERO_ERROR;
  pretokenizer.reset(icu::RegexPattern::compile(
      icu::UnicodeString::fromUTF8(pretokenizer_pattern()), 0, parse_error, status));
  check_icu(status, "compile the pre-tokenisation pattern");
}

void Tokenizer::Impl::check_id(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(vocab.size())) {
    throw input_error("invalid token id '" + std::to_string(id) + "': outside the vocabulary of " +
                      std::to_string(vocab.size()) + " tokens");
  }
}

std::vector<int64_t> Tokenizer::Impl::word_ids(const std::string& word) const {
  // The reference seeds its cache with the two special tokens, so they never go through BPE.
  if (word == kStartOfText) return {start_id};
  if (word == kEndOfText) return {end_id};
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) return it->second;
  }
  std::vector<int64_t> ids = run_bpe(word);
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(word, ids);
  return ids;
}

std::vector<int64_t> Tokenizer::Impl::run_bpe(const std::string& word) const {
  // bpe() in clip/simple_tokenizer.py: one symbol per byte, "</w>" on the last; then, while some
  // adjacent pair is a known merge, take the lowest-ranked pair and merge all of its occurrences
  // left to right (non-overlapping).
  std::vector<int64_t> symbols;
  symbols.reserve(word.size());
  for (std::size_t i = 0; i < word.size(); ++i) {
    const auto b = static_cast<unsigned char>(word[i]);
    symbols.push_back(i + 1 < word.size() ? byte_id[b] : byte_end_id[b]);
  }
  std::vector<int64_t> merged;
  merged.reserve(symbols.size());
  while (symbols.size() > 1) {
    const Merge* best = nullptr;
    std::uint64_t best_key = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      const std::uint64_t key = pair_key(symbols[i], symbols[i + 1]);
      const auto it = merge_table.find(key);
      if (it != merge_table.end() && (best == nullptr || it->second.rank < best->rank)) {
        best = &it->second;
        best_key = key;
      }
    }
    if (best == nullptr) break;
    merged.clear();
    for (std::size_t i = 0; i < symbols.size();) {
      if (i + 1 < symbols.size() && pair_key(symbols[i], symbols[i + 1]) == best_key) {
        merged.push_back(best->merged);
        i += 2;
      } else {
        merged.push_back(symbols[i]);
        i += 1;
      }
    }
    symbols.swap(merged);
  }
  return symbols;
}

// --------------------------------------------------------------------------------------------------

Tokenizer::Tokenizer(const std::filesystem::path& merges_gz, int max_merges) {
  if (max_merges < 1) {
    throw std::invalid_argument("Tokenizer: max_merges must be at least 1, got " +
                                std::to_string(max_merges));
  }
  impl_ = std::make_unique<Impl>(merges_gz, max_merges);
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int64_t> Tokenizer::encode(std::string_view text) const {
  const icu::UnicodeString cleaned = clean(text);
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::RegexMatcher> matcher(impl_->pretokenizer->matcher(cleaned, status));
  check_icu(status, "create a regex matcher");
  std::vector<int64_t> ids;
  std::string word;
  while (matcher->find(status)) {
    word.clear();
    matcher->group(status).toUTF8String(word);
    const std::vector<int64_t> word_ids = impl_->word_ids(word);
    ids.insert(ids.end(), word_ids.begin(), word_ids.end());
  }
  check_icu(status, "pre-tokenise text");
  return ids;
}

Tokenizer::Tokens Tokenizer::tokenize(std::string_view text, int context_length) const {
  if (context_length < 2) {
    throw std::invalid_argument("Tokenizer::tokenize: context_length must be at least 2, got " +
                                std::to_string(context_length));
  }
  const auto length = static_cast<std::size_t>(context_length);
  Tokens tokens;
  tokens.ids.reserve(length);
  tokens.ids.push_back(impl_->start_id);
  const std::vector<int64_t> bpe = encode(text);
  tokens.ids.insert(tokens.ids.end(), bpe.begin(), bpe.end());
  tokens.ids.push_back(impl_->end_id);
  if (tokens.ids.size() > length) {
    // clip.tokenize(truncate=True): keep the first context_length ids, end with EOT.
    tokens.ids.resize(length);
    tokens.ids.back() = impl_->end_id;
    tokens.truncated = true;
  } else {
    tokens.ids.resize(length, 0);
  }
  return tokens;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string bytes;
  for (int64_t id : ids) {
    impl_->check_id(id);
    bytes += impl_->token_bytes[static_cast<std::size_t>(id)];
  }
  // As the reference: bytes → UTF-8 with replacement, then "</w>" → " " on the decoded text.
  const std::string text = decode_utf8_lossy(bytes);
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  for (std::size_t hit = text.find(kEndOfWord); hit != std::string::npos;
       hit = text.find(kEndOfWord, pos)) {
    out.append(text, pos, hit - pos);
    out.push_back(' ');
    pos = hit + kEndOfWord.size();
  }
  out.append(text, pos, std::string::npos);
  return out;
}

std::string Tokenizer::token_string(int64_t id) const {
  impl_->check_id(id);
  return impl_->vocab[static_cast<std::size_t>(id)];
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->vocab.size()); }

int64_t Tokenizer::start_token() const { return impl_->start_id; }

int64_t Tokenizer::end_token() const { return impl_->end_id; }

std::string Tokenizer::clean_text(std::string_view text) {
  std::string out;
  clean(text).toUTF8String(out);
  return out;
}

}  // namespace styleclip
