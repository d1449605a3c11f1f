// 2-D window geometry shared by Conv, the pools and the depthwise conv (NCHW).
#pragma once
#include <algorithm>
#include <string>

#include "../plan.h"

namespace graphopt::runtime {

struct Geo {
  index_t kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, OH, OW;
};

// Output geometry for a 2-D window op; auto_pad: 0 NOTSET, 1 SAME_UPPER, 2 SAME_LOWER, 3 VALID.
inline bool geometry(const Step& s, index_t H, index_t W, index_t kh, index_t kw, Geo* g, std::string* err) {
  auto v = [&](const char* k, index_t i, index_t d) {
    const auto* p = s.iv(k);
    return p && static_cast<index_t>(p->size()) > i ? (*p)[i] : d;
  };
  g->kh = kh;
  g->kw = kw;
  g->sh = v("strides", 0, 1);
  g->sw = v("strides", 1, 1);
  g->dh = v("dilations", 0, 1);
  g->dw = v("dilations", 1, 1);
  g->pt = v("pads", 0, 0);
  g->pl = v("pads", 1, 0);
  g->pb = v("pads", 2, 0);
  g->pr = v("pads", 3, 0);
  const index_t ekh = (kh - 1) * g->dh + 1, ekw = (kw - 1) * g->dw + 1;
  const std::int64_t ap = s.i("auto_pad", 0);
  const bool ceil_mode = s.i("ceil_mode", 0) != 0;
  if (ap == 1 || ap == 2) {
    g->OH = (H + g->sh - 1) / g->sh;
    g->OW = (W + g->sw - 1) / g->sw;
    const index_t ph = std::max<index_t>((g->OH - 1) * g->sh + ekh - H, 0), pw = std::max<index_t>((g->OW - 1) * g->sw + ekw - W, 0);
    g->pt = ap == 1 ? ph / 2 : ph - ph / 2;
    g->pb = ph - g->pt;
    g->pl = ap == 1 ? pw / 2 : pw - pw / 2;
    g->pr = pw - g->pl;
    return true;
  }
  if (ap == 3) g->pt = g->pl = g->pb = g->pr = 0;
  auto od = [&](index_t in, index_t p0, index_t p1, index_t ek, index_t st) {
    const index_t span = in + p0 + p1 - ek;
    if (span < 0) return index_t(-1);
    index_t o = (ceil_mode ? (span + st - 1) / st : span / st) + 1;
    // ceil_mode: the last window must start inside the input or left padding.
    if (ceil_mode && (o - 1) * st >= in + p0) --o;
    return o;
  };
  g->OH = od(H, g->pt, g->pb, ekh, g->sh);
  g->OW = od(W, g->pl, g->pr, ekw, g->sw);
  if (g->OH < 0 || g->OW < 0) { *err = "window larger than the padded input"; return false; }
  return true;
}

}  // namespace graphopt::runtime
