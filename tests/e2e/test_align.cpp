// Photos: the FFHQ quad from landmarks, the aligned crop, paste-back, YuNet detection
// on the fixture photos, and `styleclip align` end to end with its error paths.
#include <styleclip/engines/invert.h>
#include <styleclip/engines/pti.h>
#include <styleclip/error.h>
#include <styleclip/io/face_align.h>
#include <styleclip/io/image_io.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/io/sha256.h>
#include <styleclip/models/bundle.h>
#include <styleclip/models/encoder.h>
#include <styleclip/models/lpips.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

fs::path yunet() { return test::fixtures_dir() / "faces" / "yunet_2022mar.onnx"; }
fs::path photo(const std::string& name) {
  return test::fixtures_dir() / "images" / (name + ".png");
}

/// Landmarks of an upright face (eyes 20 apart at y 50, mouth corners 16 apart at y 70) rotated
/// by `deg` about (50, 60) and scaled by `k`.
std::array<Point2, 5> face_landmarks(double deg, double k) {
  const std::array<Point2, 5> up = {Point2{40, 50}, Point2{60, 50}, Point2{50, 60}, Point2{42, 70},
                                    Point2{58, 70}};
  const double a = deg * M_PI / 180, c = std::cos(a), s = std::sin(a);
  std::array<Point2, 5> out;
  for (size_t i = 0; i < 5; ++i) {
    const double x = (up[i].x - 50) * k, y = (up[i].y - 60) * k;
    out[i] = {50 + c * x - s * y, 60 + s * x + c * y};
  }
  return out;
}

TEST(FaceAlign, QuadOfUprightLandmarksFollowsTheRecipe) {
  // eye_avg (50, 50), eye_to_eye (20, 0), eye_to_mouth (0, 20): x = (20 + 20, 0) = (40, 0),
  // |x| scaled to max(2·20, 1.8·20) = 40; y = (0, 40); c = (50, 52).
  const auto a = ffhq_alignment(face_landmarks(0, 1), 256);
  const std::array<Point2, 4> want = {Point2{10, 12}, Point2{10, 92}, Point2{90, 92},
                                      Point2{90, 12}};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(a.quad[i].x, want[i].x, 1e-9) << i;
    EXPECT_NEAR(a.quad[i].y, want[i].y, 1e-9) << i;
  }
  EXPECT_NEAR(a.qsize, 80, 1e-9);
}

TEST(FaceAlign, QuadRotatesAndScalesWithTheFace) {
  const auto ref = ffhq_alignment(face_landmarks(0, 1), 256);
  for (const double deg : {-35.0, 12.0, 90.0}) {
    for (const double k : {0.5, 3.0}) {
      const auto a = ffhq_alignment(face_landmarks(deg, k), 256);
      const double r = deg * M_PI / 180;
      for (size_t i = 0; i < 4; ++i) {
        const double x = (ref.quad[i].x - 50) * k, y = (ref.quad[i].y - 60) * k;
        EXPECT_NEAR(a.quad[i].x, 50 + std::cos(r) * x - std::sin(r) * y, 1e-9) << deg << " " << k;
        EXPECT_NEAR(a.quad[i].y, 60 + std::sin(r) * x + std::cos(r) * y, 1e-9) << deg << " " << k;
      }
      EXPECT_NEAR(a.qsize, 80 * k, 1e-9);
    }
  }
}

TEST(FaceAlign, DegenerateLandmarksAreAnInputError) {
  std::array<Point2, 5> same;
  same.fill(Point2{5, 5});
  EXPECT_THROW((void)ffhq_alignment(same, 64), Error);
}

torch::Tensor smooth_photo(int h, int w) {
  // A smooth colour field (so bilinear resampling is nearly exact) with some structure.
  auto y = torch::arange(h, torch::kFloat32).view({h, 1, 1});
  auto x = torch::arange(w, torch::kFloat32).view({1, w, 1});
  auto c = torch::tensor({0.f, 2.f, 4.f}).view({1, 1, 3});
  return (127.5 + 100 * torch::sin(x / 23.0 + c) * torch::cos(y / 31.0 - c))
      .round()
      .to(torch::kUInt8);
}

TEST(FaceAlign, AxisAlignedQuadAtScaleOneCopiesThePixels) {
  const auto img = smooth_photo(120, 150);
  Alignment a;
  a.size = 64;
  a.qsize = 64;
  // Crop pixel (u, v) ↦ photo (30 + u, 20 + v): the square's outer corners sit half a pixel out.
  a.quad = {Point2{29.5, 19.5}, Point2{29.5, 83.5}, Point2{93.5, 83.5}, Point2{93.5, 19.5}};
  const auto crop = align_face(img, a);
  EXPECT_TRUE(torch::equal(crop, img.slice(0, 20, 84).slice(1, 30, 94)));
}

TEST(FaceAlign, PasteBackOfTheUneditedCropGivesThePhotoBack) {
  const auto img = smooth_photo(200, 240);
  const auto a = ffhq_alignment(face_landmarks(25, 1.2), 128);  // rotated, inside the photo
  const auto crop = align_face(img, a);
  const auto back = paste_back(img, crop, a);
  ASSERT_EQ(back.sizes(), img.sizes());
  // Outside the crop's square (plus the one pixel bilinear reach), the photo bit for bit.
  const auto m = a.crop_to_photo();
  const double det = m[0] * m[4] - m[1] * m[3];
  int64_t outside = 0, inside = 0;
  double err_inside = 0;
  for (int64_t y = 0; y < img.size(0); ++y) {
    for (int64_t x = 0; x < img.size(1); ++x) {
      const double dx = double(x) - m[2], dy = double(y) - m[5];
      const double u = (m[4] * dx - m[1] * dy) / det, v = (-m[3] * dx + m[0] * dy) / det;
      const double margin = 1.0 / std::sqrt(std::abs(det));  // one photo pixel in crop units
      const bool out = u < -0.5 - margin || v < -0.5 - margin || u > a.size - 0.5 + margin ||
                       v > a.size - 0.5 + margin;
      const auto d = (back[y][x].to(torch::kInt32) - img[y][x].to(torch::kInt32)).abs();
      if (out) {
        ++outside;
        EXPECT_EQ(d.max().item<int>(), 0) << x << "," << y;
      } else {
        ++inside;
        err_inside += d.to(torch::kFloat64).mean().item<double>();
      }
    }
  }
  ASSERT_GT(outside, 1000);
  ASSERT_GT(inside, 1000);
  // Two bilinear resamplings of a smooth field: under two 8-bit levels on average.
  EXPECT_LT(err_inside / double(inside), 2.0);
}

TEST(FaceAlign, PasteBackRejectsACropOfTheWrongSize) {
  const auto img = smooth_photo(100, 100);
  const auto a = ffhq_alignment(face_landmarks(0, 1), 64);
  EXPECT_THROW((void)paste_back(img, torch::zeros({32, 32, 3}, torch::kUInt8), a), Error);
}

TEST(FaceDetect, AstronautHasOneFaceWithPlausibleLandmarks) {
  SKIP_UNLESS_FIXTURE("faces/yunet_2022mar.onnx");
  const FaceDetector det(yunet());
  const auto faces = det.detect(read_image_rgb(photo("astronaut")));
  ASSERT_EQ(faces.size(), 1u);
  const auto& f = faces[0];
  EXPECT_GT(f.score, 0.9);
  EXPECT_GT(f.w, 50);  // the 512 px portrait's face is about 100 px wide
  for (const auto& p : f.landmarks) {
    EXPECT_GE(p.x, f.x);
    EXPECT_LE(p.x, f.x + f.w);
    EXPECT_GE(p.y, f.y);
    EXPECT_LE(p.y, f.y + f.h);
  }
  const auto& lm = f.landmarks;
  EXPECT_LT(lm[0].x, lm[1].x);  // the subject's right eye is on the image's left
  EXPECT_LT(lm[3].x, lm[4].x);
  for (const int eye : {0, 1}) {
    for (const int mouth : {3, 4}) EXPECT_LT(lm[size_t(eye)].y, lm[size_t(mouth)].y);
  }
  EXPECT_GT(lm[2].y, (lm[0].y + lm[1].y) / 2);  // nose below the eyes, above the mouth
  EXPECT_LT(lm[2].y, (lm[3].y + lm[4].y) / 2);
}

TEST(FaceDetect, CatHasNoFace) {
  SKIP_UNLESS_FIXTURE("faces/yunet_2022mar.onnx");
  const FaceDetector det(yunet());
  EXPECT_TRUE(det.detect(read_image_rgb(photo("chelsea"))).empty());
}

TEST(FaceDetect, LargePhotosAreScaledForDetectionAndMappedBack) {
  SKIP_UNLESS_FIXTURE("faces/yunet_2022mar.onnx");
  const FaceDetector det(yunet());
  const auto img = read_image_rgb(photo("astronaut"));
  const auto big = img.repeat_interleave(3, 0).repeat_interleave(3, 1);  // 1536 px
  const auto small = det.detect(img);
  const auto large = det.detect(big, /*max_side=*/512);
  ASSERT_EQ(small.size(), 1u);
  ASSERT_EQ(large.size(), 1u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_NEAR(large[0].landmarks[i].x, 3 * small[0].landmarks[i].x, 6.0) << i;
    EXPECT_NEAR(large[0].landmarks[i].y, 3 * small[0].landmarks[i].y, 6.0) << i;
  }
}

TEST(FaceDetect, MissingOrBrokenModelIsAClearError) {
  TempDir tmp;
  try {
    const FaceDetector det(tmp / "nope.onnx");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kUsage);
    EXPECT_NE(std::string(e.what()).find("nope.onnx"), std::string::npos);
  }
  { std::ofstream(tmp / "bad.onnx") << "not a model"; }
  try {
    const FaceDetector det(tmp / "bad.onnx");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBundleInvalid);
    EXPECT_NE(std::string(e.what()).find("bad.onnx"), std::string::npos);
  }
}

TEST(PhotoIo, ExifOrientationIsApplied) {
  // A 40×20 JPEG, left half blue, tagged "rotate 90° clockwise to display" (orientation 6):
  // read upright it is 20 wide and 40 tall with the blue half on top.
  TempDir tmp;
  const auto jpg = tmp / "exif6.jpg";
  const auto r = test::run_program(
      {STYLECLIP_PYTHON, "-c",
       "import sys\nfrom PIL import Image\nim = Image.new('RGB', (40, 20), (255, 0, 0))\n"
       "im.paste((0, 0, 255), (0, 0, 20, 20))\nex = Image.Exif()\nex[0x0112] = 6\n"
       "im.save(sys.argv[1], exif=ex.tobytes(), quality=95)",
       jpg.string()});
  if (r.code != 0) GTEST_SKIP() << "python3-pil is needed to write the test JPEG: " << r.err;
  const auto img = read_image_rgb(jpg);
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{40, 20, 3}));
  EXPECT_GT(img[5][10][2].item<int>(), 200);  // blue on top
  EXPECT_LT(img[5][10][0].item<int>(), 60);
  EXPECT_GT(img[35][10][0].item<int>(), 200);  // red below
}

TEST(AlignCli, WritesTheCropAndItsJsonAndNamesPhotosWithoutFaces) {
  SKIP_UNLESS_FIXTURE("faces/yunet_2022mar.onnx");
  TempDir tmp;
  const auto out = tmp / "out";
  auto r = test::styleclip({"align", photo("astronaut").string(), "--face-detector",
                            yunet().string(), "--size", "128", "--out", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, (out / "astronaut.aligned.png").string() + "\n");
  const auto crop = read_image_rgb(out / "astronaut.aligned.png");
  EXPECT_EQ(crop.sizes(), (std::vector<int64_t>{128, 128, 3}));
  const auto side = json::parse(test::read_text(out / "astronaut.align.json"));
  EXPECT_EQ(side["command"], "align");
  EXPECT_EQ(side["input"]["faces_found"], 1);
  EXPECT_EQ(side["face"]["landmarks"].size(), 5u);
  EXPECT_EQ(side["alignment"]["size"], 128);
  EXPECT_EQ(side["alignment"]["crop_to_photo"].size(), 2u);

  // No face: exit 4 naming the photo, nothing written.
  r = test::styleclip({"align", photo("chelsea").string(), "--face-detector", yunet().string(),
                       "--out", (tmp / "cat").string(), "--size", "64"});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("no face found in '" + photo("chelsea").string() + "'"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(tmp / "cat"));

  // A mix: the face is aligned, the cat reported, exit 1.
  r = test::styleclip({"align", photo("chelsea").string(), photo("astronaut").string(),
                       "--face-detector", yunet().string(), "--out", (tmp / "mix").string(),
                       "--size", "64", "--json"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "mix" / "astronaut.aligned.png"));
  EXPECT_NE(r.err.find("chelsea.png"), std::string::npos) << r.err;
  // --json: the summary on stdout instead of the paths, the failure named in it.
  const auto summary = json::parse(r.out);
  EXPECT_EQ(summary["done"], 1);
  EXPECT_EQ(summary["failed"], 1);
  EXPECT_EQ(summary["outputs"][0]["image"], (tmp / "mix" / "astronaut.aligned.png").string());
  EXPECT_NE(summary["failures"][0]["error"].get<std::string>().find("no face found"),
            std::string::npos);
}

TEST(AlignCli, TheBundlesOwnDetectorIsUsedAndTheExporterRefusesNonOnnx) {
  SKIP_UNLESS_BUNDLE("tiny");
  if (!test::have_fixture("faces/yunet_2022mar.onnx")) GTEST_SKIP() << "no YuNet fixture";
  TempDir tmp;
  const auto bundle = tmp / "bundle";
  fs::copy(test::testdata("tiny"), bundle, fs::copy_options::recursive);
  const std::string exporter = std::string(STYLECLIP_SOURCE_DIR) + "/scripts/export_bundle.py";
  // Not an ONNX file: refused with a message naming it, the bundle left as it was.
  auto r = test::run_program({STYLECLIP_PYTHON, exporter, "--face-detector",
                              std::string(STYLECLIP_SOURCE_DIR) + "/README.md", "--out",
                              bundle.string()});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("is not an ONNX model"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(bundle / "face_detector.onnx"));
  r = test::run_program(
      {STYLECLIP_PYTHON, exporter, "--face-detector", yunet().string(), "--out", bundle.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  // No --face-detector: the bundle's is found (and checksummed with the rest).
  r = test::styleclip({"align", "--models", bundle.string(), photo("astronaut").string(), "--out",
                       (tmp / "o").string(), "--size", "64"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "o" / "astronaut.aligned.png"));
  const auto side = json::parse(test::read_text(tmp / "o" / "astronaut.align.json"));
  EXPECT_EQ(side["models"]["sha256"]["face_detector"].get<std::string>().size(), 64u);
}

TEST(AlignCli, BadInputsGiveOneLineErrors) {
  TempDir tmp;
  { std::ofstream(tmp / "broken.png") << "\x89PNG but not really"; }
  { std::ofstream(tmp / "empty.jpg"); }
  const std::string det = test::have_fixture("faces/yunet_2022mar.onnx")
                              ? yunet().string()
                              : (tmp / "missing.onnx").string();
  for (const auto& [file, want] : std::vector<std::pair<std::string, std::string>>{
           {(tmp / "broken.png").string(), "not an image OpenCV can decode"},
           {(tmp / "empty.jpg").string(), "file is empty"},
           {(tmp / "none.png").string(), "file does not exist"}}) {
    const auto r = test::styleclip(
        {"align", file, "--face-detector", det, "--size", "64", "--out", (tmp / "o").string()});
    if (!test::have_fixture("faces/yunet_2022mar.onnx")) {
      EXPECT_EQ(r.code, 2);  // the missing detector is reported first
      continue;
    }
    EXPECT_EQ(r.code, 4) << file;
    EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(file), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // No detector anywhere: usage error with the fix.
  const auto r = test::styleclip({"align", (tmp / "x.png").string(), "--models",
                                  test::testdata("tiny").string(), "--out", (tmp / "o").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--face-detector"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace styleclip

namespace styleclip {
namespace {

TEST(InvertCli, InvertsAlignedCropsCachesAndReportsBadInputs) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  const std::string tiny = test::testdata("tiny").string();
  // A crop the generator can make: seed 3's image.
  auto r = test::styleclip(
      {"generate", "--models", tiny, "--seed", "3", "--out", (tmp / "gen").string(), "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto img = (tmp / "gen" / "seed0003.png").string();
  const auto out = (tmp / "inv").string();
  const std::vector<std::string> cmd = {"invert", "--models", tiny,      "--aligned", img,
                                        "--out",  out,        "--steps", "60"};
  r = test::styleclip(cmd);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, (fs::path(out) / "seed0003.latent.pt").string() + "\n");
  const auto side = json::parse(test::read_text(fs::path(out) / "seed0003.invert.json"));
  EXPECT_EQ(side["command"], "invert");
  EXPECT_GT(side["metrics"]["psnr"].get<double>(), side["metrics"]["psnr_start"].get<double>() + 3);
  const auto latent = read_tensor_file(fs::path(out) / "seed0003.latent.pt");
  EXPECT_EQ(latent.dim(), 3);
  EXPECT_EQ(latent.size(0), 1);
  for (const auto* f : {"seed0003.target.png", "seed0003.inverted.png"})
    EXPECT_TRUE(fs::exists(fs::path(out) / f)) << f;

  // The same again: a cache hit, nothing rewritten; --json says so.
  const auto before = fs::last_write_time(fs::path(out) / "seed0003.latent.pt");
  auto with_json = cmd;
  with_json.push_back("--json");
  r = test::styleclip(with_json);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("cached"), std::string::npos) << r.err;
  const auto summary = json::parse(r.out);
  EXPECT_EQ(summary["done"], 0);
  EXPECT_EQ(summary["skipped"], 1);
  ASSERT_EQ(summary["outputs"].size(), 1u);
  EXPECT_EQ(summary["outputs"][0]["latent"], (fs::path(out) / "seed0003.latent.pt").string());
  EXPECT_EQ(summary["outputs"][0]["cached"], true);
  EXPECT_GT(summary["outputs"][0]["psnr"].get<double>(), 0.0);
  EXPECT_EQ(fs::last_write_time(fs::path(out) / "seed0003.latent.pt"), before);
  // Other options: not the cached result.
  auto other = cmd;
  other.back() = "61";
  r = test::styleclip(other);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("cached"), std::string::npos) << r.err;

  // A file that is not an image: exit 4 naming it, nothing written for it.
  { std::ofstream(tmp / "bad.png") << "nope"; }
  r = test::styleclip({"invert", "--models", tiny, "--aligned", (tmp / "bad.png").string(), "--out",
                       (tmp / "inv2").string()});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("bad.png"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "inv2"));
}

TEST(InvertCli, BatchesGoOnPastBadPhotosAndABrokenCacheIsRedone) {
  SKIP_UNLESS_BUNDLE("tiny");
  SKIP_UNLESS_FIXTURE("faces/yunet_2022mar.onnx");
  TempDir tmp;
  { std::ofstream(tmp / "broken.png") << "not a png"; }
  const auto cmd = [&](const std::vector<std::string>& photos) {
    std::vector<std::string> c = {"invert",
                                  "--models",
                                  test::testdata("tiny").string(),
                                  "--face-detector",
                                  yunet().string(),
                                  "--steps",
                                  "5",
                                  "--out",
                                  (tmp / "o").string()};
    c.insert(c.end(), photos.begin(), photos.end());
    return c;
  };
  // A face and a cat: the face is inverted, the cat named, exit 1.
  auto r = test::styleclip(cmd({photo("chelsea").string(), photo("astronaut").string()}));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(r.out, (tmp / "o" / "astronaut.latent.pt").string() + "\n");
  EXPECT_NE(r.err.find("no face found in '" + photo("chelsea").string() + "'"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(tmp / "o" / "chelsea.latent.pt"));
  // Nothing usable: exit 4 naming the first reason.
  r = test::styleclip(cmd({(tmp / "broken.png").string(), photo("chelsea").string()}));
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_NE(r.err.find("none of the 2 images could be inverted; the first: cannot read image '" +
                       (tmp / "broken.png").string()),
            std::string::npos)
      << r.err;
  // A cache whose sidecar is unreadable is no cache: the photo is inverted again.
  const auto side_path = tmp / "o" / "astronaut.invert.json";
  { std::ofstream(side_path) << "{ truncated"; }
  r = test::styleclip(cmd({photo("astronaut").string()}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("cached"), std::string::npos) << r.err;
  EXPECT_EQ(json::parse(test::read_text(side_path))["command"], "invert");
  // ... and now it is one.
  r = test::styleclip(cmd({photo("astronaut").string()}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("cached"), std::string::npos) << r.err;
}

// Pivotal tuning on a picture the generator has never made (a smooth colour pattern): the tuned
// generator renders the pivot much closer to it than the projector's answer alone.
TEST(InvertCli, PivotalTuningReconstructsBetterAndEditsUseTheTunedGenerator) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  const auto tiny = test::testdata("tiny");
  const auto ys = torch::linspace(-1, 1, 32).view({32, 1});
  const auto xs = torch::linspace(-1, 1, 32).view({1, 32});
  const auto pattern = torch::stack({torch::sin(3 * xs + ys), torch::cos(2 * ys) * xs,
                                     0.5 * torch::sin(4 * (xs - ys))})
                           .clamp(-1, 1);
  write_image(tmp / "pattern.png", pattern);
  const std::vector<std::string> base = {
      "invert",  "--models", tiny.string(), "--aligned", (tmp / "pattern.png").string(),
      "--steps", "40",       "-q"};
  auto cmd = base;
  cmd.insert(cmd.end(), {"--out", (tmp / "projector").string()});
  auto r = test::styleclip(cmd);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto alone = json::parse(test::read_text(tmp / "projector" / "pattern.invert.json"));
  auto pti = base;
  pti.insert(pti.end(), {"--with", "pti", "--pti-steps", "60", "--pti-lr", "0.002", "--json",
                         "--out", (tmp / "pti").string()});
  r = test::styleclip(pti);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto dir = tmp / "pti";
  const auto side = json::parse(test::read_text(dir / "pattern.invert.json"));
  EXPECT_EQ(side["method"], "optimize+pti");
  const auto& m = side["metrics"]["pti"];
  // The pivot is the projector's answer (same options, same start), then tuning adds decibels.
  EXPECT_NEAR(m["psnr_pivot"].get<double>(), alone["metrics"]["psnr"].get<double>(), 1e-3);
  EXPECT_GT(m["psnr"].get<double>(), m["psnr_pivot"].get<double>() + 2.0) << m.dump();
  EXPECT_EQ(side["metrics"]["psnr"], m["psnr"]);
  EXPECT_EQ(side["options"]["pti_steps"], 60);
  EXPECT_EQ(side["outputs"]["pti_weights"], "pattern.pti.pt");
  // The weights: only the synthesis network's tensors changed (W+ pivots give the mapping no
  // gradient), and with them the generator renders the pivot at the PSNR the sidecar reports.
  const auto weights = load_weights(dir / "pattern.pti.pt");
  ASSERT_FALSE(weights.empty());
  for (const auto& [name, t] : weights) EXPECT_NE(name.rfind("style.", 0), 0u) << name;
  const Bundle bundle = Bundle::open(tiny);
  const Generator gen(bundle, torch::kCPU);
  const Generator tuned(gen, weights);
  const auto ws = read_tensor_file(dir / "pattern.latent.pt");
  const auto target = pattern.unsqueeze(0);
  torch::NoGradGuard no_grad;
  const double p_tuned = psnr(tuned.synthesis(ws), target)[0].item<double>();
  const double p_plain = psnr(gen.synthesis(ws), target)[0].item<double>();
  EXPECT_NEAR(p_tuned, m["psnr"].get<double>(), 0.3);  // the PNG target is 8-bit
  EXPECT_NEAR(p_plain, m["psnr_pivot"].get<double>(), 0.3);
  // Making the tuned copy left the generator it was made from as it was.
  EXPECT_TRUE(torch::equal(Generator(bundle, torch::kCPU).synthesis(ws), gen.synthesis(ws)));

  // Cached like every inversion; the weights file is part of the cache.
  r = test::styleclip(pti);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["skipped"], 1);
  fs::remove(dir / "pattern.pti.pt");
  r = test::styleclip(pti);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["done"], 1);
  EXPECT_TRUE(fs::exists(dir / "pattern.pti.pt"));
  // An edit of that latent uses its tuned generator (named in the sidecar beside it): the
  // edit's "before" is the tuned reconstruction, pixel for pixel.
  const auto inverted = read_image_rgb(dir / "pattern.inverted.png");
  r = test::styleclip({"edit", "--models", tiny.string(), "--text", "a red shape", "--steps", "2",
                       "--compare", (dir / "pattern.latent.pt").string(), "--out",
                       (tmp / "e").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto edit_base = tmp / "e" / "pattern.latent.a-red-shape.optimize";
  auto compare = read_image_rgb(edit_base.string() + ".compare.png");
  EXPECT_TRUE(torch::equal(compare.slice(1, 0, 32), inverted));
  auto edit_side = json::parse(test::read_text(edit_base.string() + ".json"));
  EXPECT_EQ(edit_side["input"]["pti_weights"], (dir / "pattern.pti.pt").string());
  // The same latent without its sidecar is rendered by the bundle's generator.
  fs::create_directories(tmp / "bare");
  fs::copy_file(dir / "pattern.latent.pt", tmp / "bare" / "pattern.latent.pt");
  r = test::styleclip({"edit", "--models", tiny.string(), "--text", "a red shape", "--steps", "2",
                       "--compare", (tmp / "bare" / "pattern.latent.pt").string(), "--out",
                       (tmp / "e2").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  compare = read_image_rgb(tmp / "e2" / "pattern.latent.a-red-shape.optimize.compare.png");
  EXPECT_FALSE(torch::equal(compare.slice(1, 0, 32), inverted));
  EXPECT_FALSE(
      json::parse(test::read_text(tmp / "e2" / "pattern.latent.a-red-shape.optimize.json"))["input"]
          .contains("pti_weights"));
  // The photo itself, edited with --with pti: inverted, tuned and edited in one command.
  r = test::styleclip({"edit",
                       "--models",
                       tiny.string(),
                       "--text",
                       "a red shape",
                       "--steps",
                       "2",
                       "--aligned",
                       "--invert-steps",
                       "40",
                       "--with",
                       "pti",
                       "--pti-steps",
                       "60",
                       "--pti-lr",
                       "0.002",
                       "--compare",
                       (tmp / "pattern.png").string(),
                       "--out",
                       (tmp / "e3").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  edit_side = json::parse(test::read_text(tmp / "e3" / "pattern.a-red-shape.optimize.json"));
  EXPECT_EQ(edit_side["input"]["pti_weights"], (tmp / "e3" / "pattern.pti.pt").string());
  EXPECT_EQ(edit_side["input"]["inversion"]["method"], "optimize+pti");
  compare = read_image_rgb(tmp / "e3" / "pattern.a-red-shape.optimize.compare.png");
  EXPECT_TRUE(
      torch::equal(compare.slice(1, 32, 64), read_image_rgb(tmp / "e3" / "pattern.inverted.png")));
  // A tuned generator that changed after the inversion: that latent fails (exit 1, as any input
  // that fails in a batch), naming the fix.
  std::ofstream(dir / "pattern.pti.pt", std::ios::app) << "x";
  r = test::styleclip({"edit", "--models", tiny.string(), "--text", "a red shape", "--steps", "2",
                       (dir / "pattern.latent.pt").string(), "--out", (tmp / "e4").string()});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("is missing or has changed: run styleclip invert --with pti again"),
            std::string::npos)
      << r.err;
  // Weights that belong to another generator (listed consistently in the sidecar): that input
  // fails, naming the tensor, and the others are edited.
  save_weights(dir / "pattern.pti.pt", {{"nope", torch::zeros({2})}});
  auto inv = json::parse(test::read_text(dir / "pattern.invert.json"));
  inv["outputs"]["pti_weights_sha256"] = sha256_file(dir / "pattern.pti.pt");
  std::ofstream(dir / "pattern.invert.json") << inv.dump();
  r = test::styleclip({"edit", "--models", tiny.string(), "--text", "a red shape", "--steps", "2",
                       "--seed", "1", (dir / "pattern.latent.pt").string(), "--json", "--out",
                       (tmp / "e5").string()});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(json::parse(r.out)["done"], 1);
  EXPECT_NE(r.err.find("'nope' is not a parameter of generator"), std::string::npos) << r.err;
}

TEST(InvertCli, PhotoWithoutAFaceExitsFour) {
  SKIP_UNLESS_BUNDLE("tiny");
  if (!test::have_fixture("faces/yunet_2022mar.onnx")) GTEST_SKIP() << "no YuNet fixture";
  TempDir tmp;
  const auto r = test::styleclip({"invert", "--models", test::testdata("tiny").string(),
                                  "--face-detector", yunet().string(), photo("chelsea").string(),
                                  "--out", (tmp / "o").string(), "--steps", "5"});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("no face found in '" + photo("chelsea").string() + "'"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace styleclip

// `styleclip edit PHOTO`: detect → align → invert → edit → paste back.
namespace styleclip {
namespace {

std::vector<std::string> photo_edit(const fs::path& out, const std::vector<std::string>& photos,
                                    const std::string& text) {
  std::vector<std::string> cmd = {"edit",
                                  "--models",
                                  test::testdata("tiny").string(),
                                  "--face-detector",
                                  yunet().string(),
                                  "--text",
                                  text,
                                  "--steps",
                                  "3",
                                  "--invert-steps",
                                  "10",
                                  "--out",
                                  out.string()};
  cmd.insert(cmd.end(), photos.begin(), photos.end());
  return cmd;
}

TEST(EditPhoto, GivesThePhotoBackWithTheEditedFaceAndReusesTheInversion) {
  SKIP_UNLESS_BUNDLE("tiny");
  SKIP_UNLESS_FIXTURE("faces/yunet_2022mar.onnx");
  TempDir tmp;
  const auto out = tmp / "out";
  auto cmd = photo_edit(out, {photo("astronaut").string()}, "blonde hair");
  cmd.push_back("--compare");
  auto r = test::styleclip(cmd);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto base = out / "astronaut.blonde-hair.optimize";
  EXPECT_EQ(r.out, base.string() + ".photo.png\n");  // what the user wanted: their photo back

  const auto original = read_image_rgb(photo("astronaut"));
  const auto edited = read_image_rgb(base.string() + ".photo.png");
  ASSERT_EQ(edited.sizes(), original.sizes());
  const auto side = json::parse(test::read_text(base.string() + ".json"));
  // Outside the crop's square the photo is untouched, bit for bit; inside, the edit shows.
  const auto& quad = side["input"]["detection"]["alignment"]["quad"];
  double y_max = 0;
  for (const auto& p : quad) y_max = std::max(y_max, p[1].get<double>());
  const auto below = static_cast<int64_t>(std::ceil(y_max)) + 2;
  ASSERT_LT(below, original.size(0));
  EXPECT_TRUE(torch::equal(edited.slice(0, below), original.slice(0, below)));
  const auto face = [&](const torch::Tensor& t) {
    const auto& box = side["input"]["detection"]["face"]["box"];
    const auto x = box[0].get<int64_t>(), y = box[1].get<int64_t>();
    return t.slice(0, y, y + box[3].get<int64_t>())
        .slice(1, x, x + box[2].get<int64_t>())
        .to(torch::kFloat32);
  };
  EXPECT_GT((face(edited) - face(original)).abs().mean().item<double>(), 5.0);

  // The sidecar records every stage.
  EXPECT_EQ(side["input"]["photo"], fs::absolute(photo("astronaut")).lexically_normal().string());
  EXPECT_EQ(side["input"]["faces_found"], 1);
  EXPECT_EQ(side["input"]["detection"]["face"]["landmarks"].size(), 5u);
  EXPECT_EQ(side["input"]["inversion"]["cached"], false);
  EXPECT_GT(side["input"]["inversion"]["psnr"].get<double>(), 0.0);
  EXPECT_EQ(side["input"]["paste_back"], true);
  EXPECT_EQ(side["outputs"]["photo"], "astronaut.blonde-hair.optimize.photo.png");
  // compare: the aligned crop | its reconstruction | the edit; and the photo before | after.
  const int res = 32;
  const auto cmp = read_image_rgb(base.string() + ".compare.png");
  EXPECT_EQ(cmp.sizes(), (std::vector<int64_t>{res, 3 * res, 3}));
  const auto pcmp = read_image_rgb(base.string() + ".photo-compare.jpg");  // a JPEG preview
  EXPECT_EQ(pcmp.size(1), 2 * original.size(1));
  EXPECT_LT((pcmp.slice(1, 0, original.size(1)).to(torch::kFloat32) - original.to(torch::kFloat32))
                .abs()
                .mean()
                .item<double>(),
            3.0);

  // A second edit of the same photo: the inversion comes from the cache.
  const auto latent = out / "astronaut.latent.pt";
  ASSERT_TRUE(fs::exists(latent));
  const auto stamp = fs::last_write_time(latent);
  r = test::styleclip(photo_edit(out, {photo("astronaut").string()}, "red hair"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("cached"), std::string::npos) << r.err;
  EXPECT_EQ(fs::last_write_time(latent), stamp);
  const auto side2 = json::parse(test::read_text(out / "astronaut.red-hair.optimize.json"));
  EXPECT_EQ(side2["input"]["inversion"]["cached"], true);

  // --no-paste-back: the edited crop only.
  cmd = photo_edit(tmp / "crop-only", {photo("astronaut").string()}, "blonde hair");
  cmd.push_back("--no-paste-back");
  r = test::styleclip(cmd);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, (tmp / "crop-only" / "astronaut.blonde-hair.optimize.png").string() + "\n");
  EXPECT_FALSE(fs::exists(tmp / "crop-only" / "astronaut.blonde-hair.optimize.photo.png"));
}

TEST(EditPhoto, NoFaceAloneExitsFourAndInABatchTheOthersGoOn) {
  SKIP_UNLESS_BUNDLE("tiny");
  SKIP_UNLESS_FIXTURE("faces/yunet_2022mar.onnx");
  TempDir tmp;
  auto r = test::styleclip(photo_edit(tmp / "cat", {photo("chelsea").string()}, "blonde hair"));
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("no face found in '" + photo("chelsea").string() + "'"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("terminate"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "cat"));

  r = test::styleclip(photo_edit(
      tmp / "mix", {photo("chelsea").string(), photo("astronaut").string()}, "blonde hair"));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "mix" / "astronaut.blonde-hair.optimize.photo.png"));
  EXPECT_FALSE(fs::exists(tmp / "mix" / "chelsea.blonde-hair.optimize.json"));
  EXPECT_NE(r.err.find("chelsea"), std::string::npos) << r.err;
}

TEST(EditPhoto, AlignedCropsAndEveryEngine) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  const std::string tiny = test::testdata("tiny").string();
  auto r = test::styleclip(
      {"generate", "--models", tiny, "--seed", "5", "--out", (tmp / "gen").string(), "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto crop = (tmp / "gen" / "seed0005.png").string();
  // An aligned crop: no detector needed, no paste-back (there is no photo around it).
  r = test::styleclip({"edit", "--models", tiny, "--aligned", crop, "--text", "a smile", "--steps",
                       "3", "--invert-steps", "10", "--out", (tmp / "o").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, (tmp / "o" / "seed0005.a-smile.optimize.png").string() + "\n");
  const auto side = json::parse(test::read_text(tmp / "o" / "seed0005.a-smile.optimize.json"));
  EXPECT_EQ(side["input"]["paste_back"], false);
  EXPECT_TRUE(side["input"]["detection"].is_null());
  // The global engine takes the same inverted photo from the cache (a copy of the bundle with
  // quick statistics: the generator, and so the cache key, is the same).
  const auto bundle = tmp / "bundle";
  fs::copy(tiny, bundle, fs::copy_options::recursive);
  r = test::styleclip({"global", "prepare", "--models", bundle.string(), "--samples", "200",
                       "--images", "2", "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::styleclip({"edit", "--models", bundle.string(), "--aligned", crop, "--method", "global",
                       "--neutral", "a face", "--text", "a smile", "--threshold", "0",
                       "--invert-steps", "10", "--out", (tmp / "o").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("cached"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "o" / "seed0005.a-smile.global.png"));
}

TEST(PhotoIo, PixelLimitIsCheckedFromTheHeaderAndOddFormatsBecomeRgb) {
  TempDir tmp;
  const auto png = tmp / "wide.png";
  const auto jpg = tmp / "wide.jpg";
  const auto img = torch::rand({3, 30, 70}) * 2 - 1;
  write_image(png, img);
  write_image(jpg, img);
  for (const auto& f : {png, jpg}) {
    const auto size = peek_image_size(f);
    ASSERT_TRUE(size.has_value()) << f;
    EXPECT_EQ(size->first, 70) << f;
    EXPECT_EQ(size->second, 30) << f;
    EXPECT_EQ(read_image_rgb(f, 2100).sizes(), (std::vector<int64_t>{30, 70, 3}));
    try {
      (void)read_image_rgb(f, 2099);
      ADD_FAILURE() << "no error for " << f;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kInputUnusable);
      EXPECT_NE(std::string(e.what()).find("70x30 is more than --max-pixels 2099"),
                std::string::npos)
          << e.what();
    }
  }
  // A folder where an image was expected.
  try {
    (void)read_image_rgb(tmp.path());
    ADD_FAILURE() << "no error for a folder";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kInputUnusable);
    EXPECT_NE(std::string(e.what()).find("': it is a folder"), std::string::npos) << e.what();
  }
  // The command line's --max-pixels, one line naming the file.
  if (test::have_fixture("faces/yunet_2022mar.onnx")) {
    const auto r =
        test::styleclip({"align", png.string(), "--max-pixels", "100", "--size", "64",
                         "--face-detector", yunet().string(), "--out", (tmp / "o").string()});
    EXPECT_EQ(r.code, 4);
    EXPECT_NE(r.err.find("'" + png.string() + "': 70x30 is more than --max-pixels 100"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }

  // Greyscale, RGBA, 16-bit, WebP, TIFF and BMP all come back as 8-bit RGB.
  const auto made = test::run_program(
      {STYLECLIP_PYTHON, "-c",
       "import sys, os\nfrom PIL import Image\nd = sys.argv[1]\n"
       "Image.new('L', (9, 7), 200).save(os.path.join(d, 'grey.png'))\n"
       "Image.new('RGBA', (9, 7), (10, 20, 30, 40)).save(os.path.join(d, 'rgba.png'))\n"
       "Image.new('I;16', (9, 7), 65535).save(os.path.join(d, 'deep.png'))\n"
       "for e in ('webp', 'tiff', 'bmp'):\n"
       "    Image.new('RGB', (9, 7), (250, 5, 5)).save(os.path.join(d, 'red.' + e), "
       "**({'lossless': True} if e == 'webp' else {}))\n",
       tmp.path().string()});
  if (made.code != 0)
    GTEST_SKIP() << "python3-pil is needed to write the test images: " << made.err;
  const auto grey = read_image_rgb(tmp / "grey.png");
  EXPECT_EQ(grey.sizes(), (std::vector<int64_t>{7, 9, 3}));
  EXPECT_EQ(grey[3][4][0].item<int>(), 200);
  EXPECT_EQ(grey[3][4][2].item<int>(), 200);
  const auto rgba = read_image_rgb(tmp / "rgba.png");
  EXPECT_EQ(rgba[0][0][0].item<int>(), 10);
  EXPECT_EQ(rgba[0][0][2].item<int>(), 30);
  const auto deep = read_image_rgb(tmp / "deep.png");
  EXPECT_EQ(deep.scalar_type(), torch::kUInt8);
  EXPECT_EQ(deep[0][0][1].item<int>(), 255);
  for (const auto* e : {"webp", "tiff", "bmp"}) {
    const auto red = read_image_rgb(tmp / (std::string("red.") + e));
    EXPECT_EQ(red.sizes(), (std::vector<int64_t>{7, 9, 3})) << e;
    EXPECT_GT(red[2][2][0].item<int>(), 240) << e;
    EXPECT_LT(red[2][2][1].item<int>(), 15) << e;
  }
}

}  // namespace
}  // namespace styleclip

// The e4e encoder (--with encoder): a random one from the exporter, in the bundle.
namespace styleclip {
namespace {

TEST(Encoder, ExportedRandomE4eLoadsAndInvertsInOnePass) {
  SKIP_UNLESS_BUNDLE("tiny");
  TempDir tmp;
  const auto bundle = tmp / "bundle";
  fs::copy(test::testdata("tiny"), bundle, fs::copy_options::recursive);
  const std::string exporter = std::string(STYLECLIP_SOURCE_DIR) + "/scripts/export_bundle.py";
  auto r = test::run_program(
      {STYLECLIP_PYTHON, exporter, "--random-encoder", "8", "--out", bundle.string()});
  ASSERT_EQ(r.code, 0) << r.err;

  const auto b = Bundle::open(bundle);
  const auto& g = b.generator();
  const Encoder enc(b, torch::kCPU);
  for (const int side : {32, 100}) {  // smaller and larger than the encoder's 64 px input
    const auto w = enc.encode(torch::rand({2, 3, side, side}) * 2 - 1);
    EXPECT_EQ(w.sizes(), (std::vector<int64_t>{2, g.num_ws, g.w_dim})) << side;
    EXPECT_TRUE(torch::isfinite(w).all().item<bool>());
  }

  // invert: the encoder is the default when the bundle has one.
  const auto crop = (tmp / "crop.png");
  write_image(crop, torch::rand({3, 32, 32}) * 2 - 1);
  r = test::styleclip({"invert", "--models", bundle.string(), "--aligned", crop.string(), "--out",
                       (tmp / "e").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  auto side = json::parse(test::read_text(tmp / "e" / "crop.invert.json"));
  EXPECT_EQ(side["method"], "encoder");
  EXPECT_GE(side["timing"]["encoder_ms"].get<double>(), 0.0);
  EXPECT_TRUE(side["metrics"]["psnr_start"].is_null());  // the encoder has no starting point
  const auto latent = read_tensor_file(tmp / "e" / "crop.latent.pt");
  EXPECT_EQ(latent.sizes(), (std::vector<int64_t>{1, g.num_ws, g.w_dim}));
  const double encoder_psnr = side["metrics"]["psnr"].get<double>();

  // --with optimize starts from the encoder's answer (its PSNR is the projector's start) and
  // improves on it.
  r = test::styleclip({"invert", "--models", bundle.string(), "--aligned", crop.string(), "--out",
                       (tmp / "o").string(), "--with", "optimize", "--steps", "40"});
  ASSERT_EQ(r.code, 0) << r.err;
  side = json::parse(test::read_text(tmp / "o" / "crop.invert.json"));
  EXPECT_EQ(side["method"], "encoder+optimize");
  EXPECT_NEAR(side["metrics"]["psnr_start"].get<double>(), encoder_psnr, 1e-3);
  EXPECT_GT(side["metrics"]["psnr"].get<double>(), encoder_psnr);

  // LPIPS in the bundle: the projector's perceptual term (recorded, part of the cache key), and
  // it still improves on the encoder's start.
  r = test::run_program(
      {STYLECLIP_PYTHON, exporter, "--random-lpips", "8", "--out", bundle.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  {
    const Lpips lp(Bundle::open(bundle), torch::kCPU);
    const auto a = torch::rand({2, 3, 32, 32}) * 2 - 1;
    const auto d = lp.distance(a, torch::rand({2, 3, 32, 32}) * 2 - 1);
    EXPECT_EQ(d.sizes(), (std::vector<int64_t>{2}));
    EXPECT_GT(d.min().item<double>(), 0.0);
    EXPECT_LT(lp.distance(a, a).abs().max().item<double>(), 1e-6);
  }
  r = test::styleclip({"invert", "--models", bundle.string(), "--aligned", crop.string(), "--out",
                       (tmp / "o").string(), "--with", "optimize", "--steps", "40"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("cached"), std::string::npos) << r.err;  // another perceptual term
  side = json::parse(test::read_text(tmp / "o" / "crop.invert.json"));
  EXPECT_EQ(side["options"]["perceptual"], "lpips");
  EXPECT_EQ(side["cache_key"]["perceptual"], "lpips");
  EXPECT_GT(side["metrics"]["psnr"].get<double>(), side["metrics"]["psnr_start"].get<double>());
  // --lpips-lambda 0: the CLIP term takes its place (CLIP is loaded for it).
  r = test::styleclip({"invert", "--models", bundle.string(), "--aligned", crop.string(), "--out",
                       (tmp / "c").string(), "--with", "optimize", "--steps", "5", "--lpips-lambda",
                       "0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(test::read_text(tmp / "c" / "crop.invert.json"))["options"]["perceptual"],
            "clip");

  // An unknown --with is a usage error naming the choices.
  r = test::styleclip({"invert", "--models", bundle.string(), "--aligned", crop.string(), "--out",
                       (tmp / "x").string(), "--with", "magic"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--with"), std::string::npos) << r.err;

  // A bundle without an encoder: --with encoder is a usage error naming the fix.
  r = test::styleclip({"invert", "--models", test::testdata("tiny").string(), "--aligned",
                       crop.string(), "--out", (tmp / "x").string(), "--with", "encoder"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("has no encoder"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--encoder"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "x"));
}

}  // namespace
}  // namespace styleclip
