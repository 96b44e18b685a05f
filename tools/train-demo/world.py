"""The drawn world of the demo model: scenes of simple shapes, drawn anti-aliased with numpy, and
captions for them in plain English with paraphrases. Deterministic: a scene is a function of its
seed alone. The vocabulary (colours, shapes, sizes, positions, backgrounds) is world.json, which
the TypeScript evaluator (bench/demo-eval) reads too.

Anti-aliasing is analytic: every shape is a signed distance field in pixels and a pixel's coverage
is clip(0.5 - distance, 0, 1), i.e. a one-pixel box filter across the edge (what supersampling a
straight edge converges to), at the cost of one evaluation per pixel.

    python3 tools/train-demo/world.py --held-out 300 > held-out.jsonl   # evaluation captions
    python3 tools/train-demo/world.py --sample 16 --png-dir /tmp/w      # look at a few scenes
"""

import argparse
import hashlib
import json
import math
import os
import random
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORLD = json.load(open(os.path.join(HERE, "world.json"), encoding="utf-8"))

COLOURS = {k: np.array(v, dtype=np.float32) for k, v in WORLD["colours"].items()}
SHAPES = list(WORLD["shapes"].keys())
PLURAL = {k: v["plural"] for k, v in WORLD["shapes"].items()}
SIZES = WORLD["sizes"]
POSITIONS = WORLD["positions"]
RELATIONS = WORLD["relations"]
BG = WORLD["backgrounds"]
COUNT_WORDS = {v: k for k, v in WORLD["counts"].items()}
MIN_DIST = WORLD["min_colour_distance"]
HELD_OUT_BELOW = WORLD["held_out"]["below"]


def is_held_out(caption: str) -> bool:
    """Captions whose hash falls below the threshold are never used for training."""
    if caption == "":
        return False
    h = hashlib.sha256(caption.encode("utf-8")).digest()
    return int.from_bytes(h[:4], "big") % 1000 < HELD_OUT_BELOW


def colour_distance(a: str, b: str) -> float:
    return float(np.linalg.norm(COLOURS[a] - COLOURS[b]))


# ---------------------------------------------------------------------------------------------
# Signed distance fields (inigo quilez's formulas), p = (x, y) arrays in units of the object's
# half-extent r, y pointing down; each returns the distance in the same units.


def _sd_box(px, py, bx, by):
    qx = np.abs(px) - bx
    qy = np.abs(py) - by
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _sd_circle(px, py):
    return np.hypot(px, py) - 1.0


def _sd_triangle(px, py):
    # iq's equilateral triangle (half side 1, pointing up), its bounding box centred on the origin.
    k = math.sqrt(3.0)
    x = np.abs(px) - 1.0
    y = -py + 0.2887 + 1.0 / k
    cond = (x + k * y) > 0
    x2 = np.where(cond, (x - k * y) / 2, x)
    y2 = np.where(cond, (-k * x - y) / 2, y)
    x2 = x2 - np.clip(x2, -2.0, 0)
    return -np.hypot(x2, y2) * np.sign(y2)


def _sd_star(px, py, n=5, inner=0.45):
    # Regular n-pointed star, outer radius 1, one point up.
    ang = np.arctan2(px, -py)  # 0 at the top, clockwise
    rad = np.hypot(px, py)
    seg = 2 * math.pi / n
    a = np.mod(ang + seg / 2, seg) - seg / 2  # angle within the sector, point at 0
    x = rad * np.sin(np.abs(a))
    y = rad * np.cos(a)
    # The edge from the point (0, 1) to the inner vertex (sin(seg/2)·inner, cos(seg/2)·inner).
    ax, ay = 0.0, 1.0
    bx, by = math.sin(seg / 2) * inner, math.cos(seg / 2) * inner
    ex, ey = bx - ax, by - ay
    wx, wy = x - ax, y - ay
    t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
    dx, dy = wx - ex * t, wy - ey * t
    dist = np.hypot(dx, dy)
    inside = (ex * wy - ey * wx) < 0  # left of the edge going from the point inwards
    return np.where(inside, -dist, dist)


def _sd_heart(px, py):
    # iq's heart, scaled and shifted to fit [-1, 1] with its dip at the top.
    s = 1.72
    x = np.abs(px) / s
    y = (-py) / s + 0.53
    a = (x + y) > 1.0
    d1 = np.hypot(x - 0.25, y - 0.75) - math.sqrt(2.0) / 4.0
    m = 0.5 * np.maximum(x + y, 0.0)
    d2 = np.sqrt(np.minimum((x - 0) ** 2 + (y - 1) ** 2, (x - m) ** 2 + (y - m) ** 2)) * np.sign(x - y)
    return np.where(a, d1, d2) * s


def _sd_ring(px, py):
    return np.abs(np.hypot(px, py) - 0.72) - 0.28


def _sd_cross(px, py):
    return np.minimum(_sd_box(px, py, 1.0, 0.32), _sd_box(px, py, 0.32, 1.0))


def _sd_square(px, py):
    return _sd_box(px, py, 0.86, 0.86)


SDF = {
    "circle": _sd_circle,
    "square": _sd_square,
    "triangle": _sd_triangle,
    "star": _sd_star,
    "ring": _sd_ring,
    "heart": _sd_heart,
    "cross": _sd_cross,
}


# ---------------------------------------------------------------------------------------------
# Scenes


def _pick(rng, items):
    return items[rng.randrange(len(items))]


def _colour_far_from(rng, avoid, pool=None):
    pool = pool or list(COLOURS.keys())
    ok = [c for c in pool if all(colour_distance(c, a) >= MIN_DIST for a in avoid)]
    return _pick(rng, ok)


def sample_background(rng):
    r = rng.random()
    if r < 0.6:
        return {"kind": "plain", "colours": [_pick(rng, BG["plain"]["colours"])]}
    if r < 0.8:
        sky = _pick(rng, BG["horizon"]["sky"])
        ground = _colour_far_from(rng, [sky], BG["horizon"]["ground"])
        return {"kind": "horizon", "colours": [sky, ground]}
    a = _pick(rng, BG["stripes"]["colours"])
    b = _colour_far_from(rng, [a], BG["stripes"]["colours"])
    return {"kind": "stripes", "colours": [a, b], "orientation": _pick(rng, BG["stripes"]["orientations"])}


# Extents of each shape's outline in units of its half-extent r, measured from the SDFs above
# (grid of 0.0025, rounded up): half-width, top, bottom (y down) and circumradius about the centre.
EXTENT = {
    "circle": (1.0, 1.0, 1.0, 1.0),
    "square": (0.86, 0.86, 0.86, 1.217),
    "triangle": (1.0, 0.866, 0.866, 1.323),
    "star": (0.951, 1.0, 0.809, 1.0),
    "ring": (1.0, 1.0, 1.0, 1.0),
    "heart": (1.04, 0.987, 0.912, 1.183),
    "cross": (1.0, 1.0, 1.0, 1.048),
}
# Several alike: each outline's bounding box at least EDGE from the image's border, and two
# objects apart by at least GAP + GAP_PER_R · (r1 + r2) (16-22 px at 256²: about one of the
# MMDiT's 16-px tokens) between their bounding boxes along x or y, or between their circumcircles.
# And no row or column of the image crosses objects over LINE_SHARE of its length: bench/demo-eval
# takes a colour covering 80 % of a line for background (two large squares side by side: 83 %).
EDGE = 0.03
GAP = 0.04
GAP_PER_R = 0.1
LINE_SHARE = 0.7


def _apart(a, b) -> bool:
    """Whether two objects' outlines are surely separated by the gap (bounding boxes or circumcircles)."""
    wa, ta, ba, ra_ = EXTENT[a["shape"]]
    wb, tb, bb, rb_ = EXTENT[b["shape"]]
    gap = GAP + GAP_PER_R * (a["r"] + b["r"])
    dx, dy = b["x"] - a["x"], b["y"] - a["y"]
    if abs(dx) >= wa * a["r"] + wb * b["r"] + gap:
        return True
    if dy >= ba * a["r"] + tb * b["r"] + gap or -dy >= ta * a["r"] + bb * b["r"] + gap:
        return True
    return math.hypot(dx, dy) >= ra_ * a["r"] + rb_ * b["r"] + gap


def _box(o):
    w, top, bottom, _ = EXTENT[o["shape"]]
    return o["x"] - w * o["r"], o["x"] + w * o["r"], o["y"] - top * o["r"], o["y"] + bottom * o["r"]


_LINE_GRID = (np.arange(128, dtype=np.float32) + 0.5) / 128


def _lines_clear(objects) -> bool:
    """Whether every row and every column crosses at most LINE_SHARE of objects: at once when their
    bounding boxes do not cross more, else by their outlines at 128² (two circles on a diagonal)."""
    boxes = [_box(o) for o in objects]
    fits = True
    for lo, hi, across in ((2, 3, (0, 1)), (0, 1, (2, 3))):  # rows (y spans), then columns
        for b in boxes:  # the most crossed line starts where some box does
            at = b[lo]
            crossed = sum(c[across[1]] - c[across[0]] for c in boxes if c[lo] <= at <= c[hi])
            fits = fits and crossed <= LINE_SHARE
    if fits:
        return True
    inside = np.zeros((128, 128), dtype=bool)
    for o in objects:
        px = (_LINE_GRID[None, :] - o["x"]) / o["r"]
        py = (_LINE_GRID[:, None] - o["y"]) / o["r"]
        inside |= SDF[o["shape"]](px, py) < 0
    return max(inside.sum(0).max(), inside.sum(1).max()) <= LINE_SHARE * 128


def _place_alike(rng, shape, colour, size, count):
    """`count` objects of one shape, colour and size at random places, inside the image and apart
    (_apart), no line crossing too much of them (_lines_clear). Rejection sampling: an object gets
    40 tries, else the layout starts again (a first object in the middle can leave no room for the
    others); after 40 layouts the size shrinks by 5 % and it starts again, so it always ends."""
    w, top, bottom, _ = EXTENT[shape]
    base = SIZES[size]
    while True:
        for _ in range(40):
            placed = []
            fails = 0
            while len(placed) < count and fails < 40:
                r = base * rng.uniform(0.92, 1.08)
                x = rng.uniform(w * r + EDGE, 1 - w * r - EDGE)
                y = rng.uniform(top * r + EDGE, 1 - bottom * r - EDGE)
                o = {"shape": shape, "colour": colour, "size": size, "x": x, "y": y, "r": r}
                if all(_apart(o, p) for p in placed) and _lines_clear(placed + [o]):
                    placed.append(o)
                    fails = 0
                else:
                    fails += 1
            if len(placed) == count:
                return placed
        base *= 0.95


def sample_scene(seed: int) -> dict:
    """A scene (what to draw) and its caption, from the seed alone."""
    rng = random.Random(seed)
    bg = sample_background(rng)
    named_bg = rng.random() < 0.88
    if not named_bg:
        bg = {"kind": "plain", "colours": [BG["default"]]}
    avoid = list(bg["colours"])
    kind = rng.random()
    objects = []
    if kind < 0.5:  # one object
        colour = _colour_far_from(rng, avoid)
        shape = _pick(rng, SHAPES)
        size = _pick(rng, ["small", "medium", "large"])
        pos = _pick(rng, list(POSITIONS.keys())) if rng.random() < 0.75 else None
        if pos is not None:
            cx, cy = POSITIONS[pos]
            jit = 0.03
        else:
            cx, cy = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
            jit = 0.0
        r = SIZES[size] * rng.uniform(0.92, 1.08)
        cx = min(max(cx + rng.uniform(-jit, jit), r + 0.02), 1 - r - 0.02)
        cy = min(max(cy + rng.uniform(-jit, jit), r + 0.02), 1 - r - 0.02)
        objects.append({"shape": shape, "colour": colour, "size": size, "x": cx, "y": cy, "r": r})
        scene = {"type": "single", "count": 1, "position": pos}
    elif kind < 0.8:  # several of the same
        count = rng.randint(2, 4)
        colour = _colour_far_from(rng, avoid)
        shape = _pick(rng, SHAPES)
        size = _pick(rng, ["small", "medium"] if count > 2 else ["small", "medium", "large"])
        objects = _place_alike(rng, shape, colour, size, count)
        scene = {"type": "count", "count": count, "position": None}
    else:  # two different objects in a relation
        rel = _pick(rng, list(RELATIONS.keys()))
        c1 = _colour_far_from(rng, avoid)
        c2 = _colour_far_from(rng, avoid + [c1])
        s1 = _pick(rng, SHAPES)
        s2 = _pick(rng, [s for s in SHAPES if s != s1])
        for (cx, cy), shape, colour in zip(RELATIONS[rel], [s1, s2], [c1, c2]):
            r = SIZES["medium"] * rng.uniform(0.92, 1.08)
            objects.append(
                {
                    "shape": shape,
                    "colour": colour,
                    "size": "medium",
                    "x": cx + rng.uniform(-0.03, 0.03),
                    "y": cy + rng.uniform(-0.03, 0.03),
                    "r": r,
                }
            )
        scene = {"type": "relation", "count": 2, "position": None, "relation": rel}
    scene.update({"seed": seed, "background": bg, "named_background": named_bg, "objects": objects})
    scene["caption"] = caption_of(scene, rng)
    return scene


# ---------------------------------------------------------------------------------------------
# Captions


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


def _bg_phrase(scene, rng):
    if not scene["named_background"]:
        return ""
    bg = scene["background"]
    c = bg["colours"]
    if bg["kind"] == "plain":
        return _pick(
            rng,
            [
                f" on a {c[0]} background",
                f" on {c[0]}",
                f", {c[0]} background",
                f" against a {c[0]} background",
                f" on a plain {c[0]} background",
            ],
        )
    if bg["kind"] == "horizon":
        return _pick(
            rng,
            [
                f" under a {c[0]} sky above {c[1]} ground",
                f", {c[0]} sky and {c[1]} ground",
                f" in a landscape with a {c[0]} sky and {c[1]} ground",
                f" on {c[1]} ground under a {c[0]} sky",
            ],
        )
    o = bg["orientation"]
    return _pick(
        rng,
        [
            f" on {c[0]} and {c[1]} stripes",
            f" on {o} {c[0]} and {c[1]} stripes",
            f" on a background of {o} {c[0]} and {c[1]} stripes",
            f", {c[0]} and {c[1]} striped background",
        ],
    )


def _pos_phrase(pos, rng):
    if pos == "centre":
        return _pick(rng, [" in the centre", " in the middle", " in the center"])
    if pos in ("left", "right"):
        return _pick(rng, [f" on the {pos}", f" at the {pos}"])
    if pos in ("top", "bottom"):
        return _pick(rng, [f" at the {pos}", f" at the {pos} of the picture"])
    return _pick(rng, [f" in the {pos} corner", f" in the {pos}", f" at the {pos}"])


def caption_of(scene, rng):
    o = scene["objects"][0]
    bgp = _bg_phrase(scene, rng)
    if scene["type"] == "single":
        size = o["size"] + " " if o["size"] != "medium" and rng.random() < 0.7 else ""
        scene["size_named"] = bool(size)
        posp = _pos_phrase(scene["position"], rng) if scene["position"] else ""
        col, shp = o["colour"], o["shape"]
        t = rng.randrange(5)
        if t == 0 or (t == 4 and not scene["named_background"]):
            first = size or col
            return f"{_article(first)} {size}{col} {shp}{posp}{bgp}"
        if t == 1:
            return f"{size}{col} {shp}{posp}{bgp}"
        if t == 2:
            first = size or shp
            return f"{_article(first)} {size}{shp} in {col}{posp}{bgp}"
        if t == 3:
            return f"a picture of {_article(size or col)} {size}{col} {shp}{posp}{bgp}"
        # t == 4: "one star, yellow, on green"
        bg = scene["background"]
        tail = f", on {bg['colours'][0]}" if bg["kind"] == "plain" else bgp
        return f"one {size}{shp}, {col}{posp.replace(' in the', ',').replace(' at the', ',').replace(' on the', ',') if posp else ''}{tail}"
    if scene["type"] == "count":
        n = scene["count"]
        word = COUNT_WORDS[n] if rng.random() < 0.85 else str(n)
        size = o["size"] + " " if o["size"] != "medium" and rng.random() < 0.7 else ""
        scene["size_named"] = bool(size)
        col, shps = o["colour"], PLURAL[o["shape"]]
        t = rng.randrange(3)
        if t == 0:
            return f"{word} {size}{col} {shps}{bgp}"
        if t == 1:
            return f"{word} {size}{shps} in {col}{bgp}"
        return f"a picture of {word} {size}{col} {shps}{bgp}"
    a, b = scene["objects"]
    rel = scene["relation"]
    t = rng.randrange(2)
    if t == 0:
        return f"{_article(a['colour'])} {a['colour']} {a['shape']} {rel} {_article(b['colour'])} {b['colour']} {b['shape']}{bgp}"
    return f"{a['colour']} {a['shape']} {rel} {b['colour']} {b['shape']}{bgp}"


# ---------------------------------------------------------------------------------------------
# Drawing


def draw(scene: dict, size: int = 256) -> np.ndarray:
    """The scene as uint8 RGB [size, size, 3]."""
    s = size
    c = (np.arange(s, dtype=np.float32) + 0.5) / s  # pixel centres in [0, 1]
    bg = scene["background"]
    img = np.empty((s, s, 3), dtype=np.float32)
    cols = [COLOURS[k] for k in bg["colours"]]
    if bg["kind"] == "plain":
        img[:] = cols[0]
    elif bg["kind"] == "horizon":
        hy = BG["horizon"]["horizon_y"]
        cov = np.clip((c - hy) * s + 0.5, 0, 1)[:, None, None]  # ground coverage per row
        img[:] = cols[0] * (1 - cov) + cols[1] * cov
    else:
        period = BG["stripes"]["period"]
        phase = np.mod(c / period, 1.0)
        # Coverage of the second colour: phase in [0.5, 1), anti-aliased at both edges.
        half_px = period * s / 2
        d = (np.abs(phase - 0.75) - 0.25) * period * s  # < 0 inside the second half
        cov = np.clip(0.5 - d, 0, 1)
        if half_px < 1:
            cov = np.full_like(cov, 0.5)
        if bg["orientation"] == "horizontal":
            cov = cov[:, None, None]
        else:
            cov = cov[None, :, None]
        img[:] = cols[0] * (1 - cov) + cols[1] * cov
    for o in scene["objects"]:
        r = o["r"]
        x0 = max(int((o["x"] - r * 1.1) * s) - 2, 0)
        x1 = min(int((o["x"] + r * 1.1) * s) + 3, s)
        y0 = max(int((o["y"] - r * 1.1) * s) - 2, 0)
        y1 = min(int((o["y"] + r * 1.1) * s) + 3, s)
        px = (c[x0:x1][None, :] - o["x"]) / r
        py = (c[y0:y1][:, None] - o["y"]) / r
        d = SDF[o["shape"]](px, py) * (r * s)  # in pixels
        cov = np.clip(0.5 - d, 0, 1)[:, :, None]
        region = img[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = region * (1 - cov) + COLOURS[o["colour"]] * cov
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Training samples and the held-out set


def training_scene(seed: int) -> dict:
    """The scene for a training seed: seeds whose caption is held out move on to the next seed."""
    while True:
        scene = sample_scene(seed)
        if not is_held_out(scene["caption"]):
            return scene
        seed += 1_000_000_007


def ground_truth(scene: dict) -> dict:
    o = scene["objects"][0]
    bg = scene["background"]
    return {
        "caption": scene["caption"],
        "seed": scene["seed"],
        "type": scene["type"],
        "background": bg["colours"][0],
        "background_kind": bg["kind"],
        "background_colours": bg["colours"],
        "background_named": scene["named_background"],
        "colour": o["colour"],
        "shape": o["shape"],
        "size": o["size"],
        "size_named": scene.get("size_named", False),
        "position": scene["position"],
        "count": scene["count"],
        "relation": scene.get("relation"),
        "objects": [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in ob.items()} for ob in scene["objects"]
        ],
    }


def held_out(n: int, start_seed: int = 7_000_000):
    """n held-out scenes (distinct captions), in a fixed order."""
    seen = set()
    seed = start_seed
    out = []
    while len(out) < n:
        scene = sample_scene(seed)
        if is_held_out(scene["caption"]) and scene["caption"] not in seen:
            seen.add(scene["caption"])
            out.append(scene)
        seed += 1
    return out


def corpus_words():
    """Every word a caption can contain (for the tokenizers)."""
    words = set()
    for seed in range(20000):
        for w in sample_scene(seed)["caption"].replace(",", " ,").split():
            words.add(w)
    for k in list(WORLD["colour_aliases"]) + list(WORLD["size_aliases"]) + list(WORLD["position_aliases"]):
        words.update(k.split())
    for k in list(COLOURS) + list(POSITIONS) + list(WORLD["counts"]) + SHAPES + list(PLURAL.values()):
        words.update(k.split())
    words.update(["and", "with", "on", "in", "of", "the", "a", "an", "corner", "picture", "background", "stripes"])
    return sorted(words)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--held-out", type=int, metavar="N", help="print N held-out captions with ground truth as JSON lines")
    ap.add_argument("--sample", type=int, metavar="N", help="print N training captions")
    ap.add_argument("--png-dir", help="with --sample/--held-out: also write the scenes as PPM images here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=WORLD["image_size"])
    ap.add_argument("--words", action="store_true", help="print the corpus words")
    a = ap.parse_args()
    if a.words:
        print("\n".join(corpus_words()))
        return
    scenes = []
    if a.held_out:
        scenes = held_out(a.held_out)
        for sc in scenes:
            print(json.dumps(ground_truth(sc)))
    elif a.sample:
        scenes = [training_scene(a.seed + i) for i in range(a.sample)]
        for sc in scenes:
            print(sc["caption"])
    if a.png_dir and scenes:
        os.makedirs(a.png_dir, exist_ok=True)
        for i, sc in enumerate(scenes):
            im = draw(sc, a.size)
            with open(os.path.join(a.png_dir, f"{i:03d}.ppm"), "wb") as f:
                f.write(b"P6 %d %d 255\n" % (a.size, a.size) + im.tobytes())


if __name__ == "__main__":
    main()
