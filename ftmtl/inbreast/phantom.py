"""Image synthesis for the synthetic INbreast: breast phantom, tissue, masses, calcifications.

Everything here is pure numpy/scipy on arrays; file formats live in ``synthetic.py``. Coordinates
follow the INbreast XML: a polygon is ``[K, 2]`` of ``(x, y)`` with ``x`` the column and ``y`` the
row, in full-resolution pixels, and a pixel ``(r, c)`` is inside a polygon when the point
``(x=c, y=r)`` is (the rule of ``skimage.draw.polygon``).

Orientation (as displayed back to back): a left breast has its chest wall at the left image edge
(column 0), a right breast at the right edge. The pectoral muscle of a mediolateral-oblique view
is a bright triangle in the upper chest-wall corner. Intensities are 14-bit (0..16383), brighter
means denser (MONOCHROME2), in the range of real INbreast files: their tissue lies between about
1,000 and 3,000, mass regions average about 1,300-2,100 with maxima of about 2,900 or less (the
statistics of the real ROI files). Fat sits near 950, dense tissue near 1,850, the muscle a
little above; ``tests/test_inbreast_synthetic.py`` checks the generated statistics against
these targets. ``render_view``'s ``intensity_scale`` renders the same view at another detector
gain (robustness checks of the intensity window).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.draw import polygon as draw_polygon

logger = logging.getLogger(__name__)

MAX_VALUE = 2**14 - 1
BACKGROUND_LEVEL = 40.0
FAT_LEVEL = 950.0
GLAND_LEVEL = 1850.0
PECTORAL_LEVEL = 2020.0
SKIN_BOOST = 440.0
MUSCLE_TEXTURE = 75.0  # std of the muscle's own texture
QUANTUM_NOISE = 4.2

MIN_MASS_MM = 5.0
MAX_MASS_MM = 30.0
TEXTURE_BETA = 3.0

# Dense-tissue offset of the density model per ACR category (1 fatty .. 4 extremely dense).
ACR_DENSITY_OFFSET = {1: -1.6, 2: -0.7, 3: 0.2, 4: 1.0}

MASS_KINDS = ("oval", "lobulated", "irregular", "spiculated")


# ---------------------------------------------------------------------------- breast geometry
@dataclass(frozen=True)
class BreastMaps:
    """Where the breast is: masks and distances, in the final (possibly mirrored) orientation."""

    breast: np.ndarray  # bool [H, W]; includes the pectoral muscle
    pectoral: np.ndarray  # bool [H, W]; empty on CC views
    skin_distance: np.ndarray  # float [H, W]; pixels to the skin line, 0 outside the breast
    chest_wall_left: bool


def breast_maps(shape: tuple[int, int], laterality: str, view: str,
                rng: np.random.Generator) -> BreastMaps:
    """A half-ellipse against the chest wall with a slightly wavy outline; ML views add a muscle."""
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    oblique = view.upper() in ("MLO", "ML")
    if oblique:
        centre_y = rows * rng.uniform(0.40, 0.48)
        half_height = rows * rng.uniform(0.50, 0.58)
    else:
        centre_y = rows * rng.uniform(0.47, 0.53)
        half_height = rows * rng.uniform(0.40, 0.46)
    depth = cols * rng.uniform(0.66, 0.84)
    centre_x = -depth * rng.uniform(0.05, 0.20)  # behind the chest wall: the wall chord is long
    u = (x - centre_x) / depth
    v = (y - centre_y) / half_height
    radius = np.hypot(u, v)
    angle = np.arctan2(v, u)
    wobble = np.ones_like(angle)
    for order in (2, 3, 4):
        wobble += rng.normal(0.0, 0.025 / order) * np.cos(order * angle + rng.uniform(0, 2 * np.pi))
    breast = radius <= wobble
    pectoral = np.zeros(shape, dtype=bool)
    if oblique:
        muscle_width = cols * rng.uniform(0.28, 0.42)
        muscle_height = rows * rng.uniform(0.40, 0.60)
        bulge = rng.uniform(0.0, 0.12)  # a slightly convex muscle edge, as seen on real MLOs
        s = x / muscle_width + y / muscle_height
        pectoral = s <= 1.0 + bulge * np.sin(np.pi * np.clip(x / muscle_width, 0.0, 1.0))
        breast |= pectoral
    if laterality.upper() == "R":
        breast, pectoral = np.fliplr(breast).copy(), np.fliplr(pectoral).copy()
    elif laterality.upper() != "L":
        raise ValueError(f"breast_maps: laterality must be 'L' or 'R', got {laterality!r}")
    chest_wall_left = laterality.upper() == "L"
    skin_distance = _skin_distance(breast, chest_wall_left)
    return BreastMaps(breast, pectoral, skin_distance, chest_wall_left)


def _skin_distance(breast: np.ndarray, chest_wall_left: bool) -> np.ndarray:
    """Distance to the nearest non-breast pixel; the chest-wall edge is not skin."""
    padded = np.pad(breast, 1, constant_values=False)
    wall = 0 if chest_wall_left else -1
    padded[1:-1, wall] = breast[:, wall]  # extend the breast through the chest wall
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1] * breast


# ---------------------------------------------------------------------------- tissue texture
def power_law_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as 1/f^beta (zero mean, unit std).

    Anatomical background of mammograms is well described by such noise with beta near 3.
    """
    rows, cols = shape
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(rows)[:, None]
    fx = np.fft.rfftfreq(cols)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = np.inf  # no DC term
    amplitude = f ** (-beta / 2.0)
    field = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=shape)
    field -= field.mean()
    return field / field.std()


def tissue_image(maps: BreastMaps, acr: int, pixel_spacing_mm: float,
                 rng: np.random.Generator, beta: float = TEXTURE_BETA) -> np.ndarray:
    """Fat and fibroglandular tissue, thinner towards the skin, a skin line and the muscle."""
    if acr not in ACR_DENSITY_OFFSET:
        raise ValueError(f"tissue_image: acr must be 1..4, got {acr!r}")
    shape = maps.breast.shape
    noise = power_law_noise(shape, beta, rng)
    dist = maps.skin_distance
    depth = dist / max(float(dist.max()), 1.0)
    # Glandular tissue sits deep in the breast, behind the nipple; the subcutaneous layer is fat.
    z = 1.3 * noise + 2.4 * (np.sqrt(depth) - 0.55) + ACR_DENSITY_OFFSET[acr]
    dense = 1.0 / (1.0 + np.exp(-1.6 * z))
    tissue = FAT_LEVEL + (GLAND_LEVEL - FAT_LEVEL) * dense
    falloff_px = max(12.0 / pixel_spacing_mm, 2.0)
    thickness = np.sqrt(1.0 - (1.0 - np.clip(dist / falloff_px, 0.0, 1.0)) ** 2)
    skin_px = max(1.0 / pixel_spacing_mm, 0.7)
    skin = SKIN_BOOST * np.exp(-((dist - 0.5) / skin_px) ** 2)
    image = np.where(maps.breast,
                     BACKGROUND_LEVEL + thickness * (tissue - BACKGROUND_LEVEL) + skin,
                     BACKGROUND_LEVEL)
    if maps.pectoral.any():
        muscle = PECTORAL_LEVEL + MUSCLE_TEXTURE * power_law_noise(shape, beta - 0.5, rng)
        weight = ndimage.gaussian_filter(maps.pectoral.astype(np.float64), 1.2)
        image = (1.0 - weight) * image + weight * np.where(maps.breast, muscle, BACKGROUND_LEVEL)
    return image


def finish_image(image: np.ndarray, rng: np.random.Generator, intensity_scale: float = 1.0
                 ) -> np.ndarray:
    """Add quantum noise, multiply by ``intensity_scale`` (a detector's gain: signal and noise
    alike) and quantise to 14-bit values in 16-bit words."""
    noisy = (image + rng.normal(0.0, QUANTUM_NOISE, image.shape)) * intensity_scale
    return np.clip(np.rint(noisy), 0, MAX_VALUE).astype(np.uint16)


# ---------------------------------------------------------------------------- mass shapes
@dataclass(frozen=True)
class MassShape:
    """One mass's shape and look, shared by the CC and ML views of a breast."""

    kind: str  # one of MASS_KINDS
    diameter_mm: float  # equivalent-area diameter of the outline before per-view jitter
    aspect: float  # >= 1, ratio of the axes of the underlying ellipse
    harmonics: np.ndarray  # [J, 3] rows of (order, relative amplitude, phase)
    spicules: np.ndarray  # [S, 3] rows of (angle, length relative to radius, half-width rad)
    edge_blur_mm: float  # margin sharpness: circumscribed (small) to ill-defined (large)
    contrast: float  # mass density over the tissue, in units of the tissue's std


def sample_mass_shape(label: str, difficulty: float, rng: np.random.Generator) -> MassShape:
    """Benign masses are mostly oval or lobulated and smooth, malignant ones irregular or spiky.

    ``difficulty`` (0..1) lowers the contrast and moves the two shape families towards each
    other: benign outlines get rougher, malignant ones smoother with fewer, shorter spicules,
    and a growing share of masses (up to 30 %) takes the look of the other family, as atypical
    lesions do. The number of random draws does not depend on ``difficulty``.
    """
    if label not in ("benign", "malignant"):
        raise ValueError(f"sample_mass_shape: label must be benign or malignant, got {label!r}")
    d = float(np.clip(difficulty, 0.0, 1.0))
    u_family, u_kind, u_aspect, u_blur, u_contrast = rng.uniform(size=5)
    median_mm = 11.0 if label == "benign" else 14.0
    diameter = float(np.clip(median_mm * np.exp(0.4 * rng.standard_normal()),
                             MIN_MASS_MM + 1.0, MAX_MASS_MM - 2.0))
    orders = np.arange(2, 13, dtype=np.float64)
    amplitudes = rng.standard_normal(orders.size)
    phases = rng.uniform(0.0, 2.0 * np.pi, orders.size)
    n_spicules = int(rng.integers(8, 17))
    spicule_draws = rng.uniform(size=(n_spicules, 3))
    circumscribed = (label == "benign") != (u_family < 0.3 * d)
    if circumscribed:
        kind = "lobulated" if u_kind < 0.25 + 0.35 * d else "oval"
        aspect = 1.0 + 0.6 * u_aspect
        roughness = 0.015 + 0.11 * d + (0.05 if kind == "lobulated" else 0.0)
        cutoff = 4 if kind == "oval" else 6  # smooth: only low orders
        blur = 0.3 + (0.4 + 0.9 * d) * u_blur
    else:
        kind = "spiculated" if u_kind < 0.55 - 0.25 * d else "irregular"
        aspect = 1.0 + 0.5 * u_aspect
        roughness = 0.16 - 0.09 * d
        cutoff = 12
        # Ill-defined margins, but thin spicules must survive the blur.
        blur = 0.3 + 0.5 * u_blur if kind == "spiculated" else 0.6 + (1.6 - 0.8 * d) * u_blur
    keep = orders <= cutoff
    harmonics = np.stack([orders[keep], roughness * amplitudes[keep] / np.sqrt(orders[keep]),
                          phases[keep]], axis=1)
    if kind == "spiculated":
        count = max(3, int(round(n_spicules * (1.0 - 0.5 * d))))
        draws = spicule_draws[:count]
        spicules = np.stack([2.0 * np.pi * draws[:, 0],
                             (0.35 + 0.6 * draws[:, 1]) * (1.0 - 0.45 * d),
                             np.deg2rad(2.0 + 3.0 * draws[:, 2])], axis=1)
    else:
        spicules = np.zeros((0, 3))
    contrast = (2.6 * (1.0 - d) + 0.35 * d) * (0.8 + 0.4 * u_contrast)
    return MassShape(kind, diameter, aspect, harmonics, spicules, blur, contrast)


def mass_outline(shape: MassShape, pixel_spacing_mm: float, rotation: float,
                 scale: float = 1.0) -> np.ndarray:
    """The mass polygon ``[K, 2]`` (x, y) in pixels around the origin, open (not closed).

    The outline is scaled to ``shape.diameter_mm * scale`` (equivalent-area diameter) and then
    kept within 5-30 mm: the largest extent is at most 30 mm, the equivalent diameter at least 5.
    """
    n_points = 256 if shape.kind == "spiculated" else 96
    theta = np.linspace(0.0, 2.0 * np.pi, n_points, endpoint=False)
    a, b = np.sqrt(shape.aspect), 1.0 / np.sqrt(shape.aspect)
    radius = a * b / np.hypot(b * np.cos(theta), a * np.sin(theta))
    wave = np.ones_like(theta)
    for order, amp, phase in shape.harmonics:
        wave += amp * np.cos(order * theta + phase)
    radius = radius * np.clip(wave, 0.4, None)
    for angle, length, half_width in shape.spicules:
        offset = np.abs(np.angle(np.exp(1j * (theta - angle))))
        radius = radius + length * np.clip(1.0 - offset / half_width, 0.0, None)
    xy = np.stack([radius * np.cos(theta + rotation), radius * np.sin(theta + rotation)], axis=1)
    xy *= (shape.diameter_mm * scale / 2.0) / np.sqrt(_polygon_area(xy) / np.pi)
    extent = _max_extent(xy)
    if extent > MAX_MASS_MM:
        xy *= MAX_MASS_MM / extent
    equivalent = 2.0 * np.sqrt(_polygon_area(xy) / np.pi)
    if equivalent < MIN_MASS_MM:
        xy *= MIN_MASS_MM / equivalent
    return xy / pixel_spacing_mm


def _polygon_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _max_extent(xy: np.ndarray) -> float:
    diff = xy[:, None, :] - xy[None, :, :]
    return float(np.sqrt((diff**2).sum(-1)).max())


def polygon_mask(polygon_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The filled polygon as a bool mask, clipped to the image (skimage's inside rule)."""
    mask = np.zeros(shape, dtype=bool)
    rr, cc = draw_polygon(polygon_xy[:, 1], polygon_xy[:, 0], shape=shape)
    mask[rr, cc] = True
    return mask


# ---------------------------------------------------------------------------- placement
def free_space(maps: BreastMaps, occupied: np.ndarray) -> np.ndarray:
    """Breast pixels a mass may cover: not the muscle and not another mass."""
    return maps.breast & ~maps.pectoral & ~occupied


def place_outline(outline: np.ndarray, free: np.ndarray, margin_px: float,
                  rng: np.random.Generator, chest_wall_left: bool | None = None,
                  overhang_px: float = 3.0) -> np.ndarray | None:
    """Move the outline to a random spot of ``free`` at least ``margin_px`` from its border.

    With ``chest_wall_left`` given, the outline instead touches the chest wall and reaches
    ``overhang_px`` beyond the image edge (the "point outside the image" fault of real files).
    Returns the placed polygon, or ``None`` when no spot fits.
    """
    rows, cols = free.shape
    reach = float(np.hypot(outline[:, 0], outline[:, 1]).max()) + margin_px
    padded = np.pad(free, 1, constant_values=False)
    if chest_wall_left is None:
        room = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
        candidates = np.flatnonzero(room >= reach)
        if candidates.size == 0:
            return None
        r, c = np.unravel_index(rng.choice(candidates), free.shape)
        return outline + np.array([c, r], dtype=np.float64)
    wall = 0 if chest_wall_left else -1
    padded[1:-1, wall] = free[:, wall]
    room = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    if chest_wall_left:
        centre_x = -overhang_px - float(outline[:, 0].min())
    else:
        centre_x = (cols - 1) + overhang_px - float(outline[:, 0].max())
    column = int(np.clip(round(centre_x), 0, cols - 1))
    candidates = np.flatnonzero(room[:, column] >= reach)
    if candidates.size == 0:
        return None
    return outline + np.array([centre_x, float(rng.choice(candidates))])


def calcification_points(maps: BreastMaps, count: int, pixel_spacing_mm: float,
                         rng: np.random.Generator) -> np.ndarray:
    """A cluster of ``count`` distinct pixel positions ``[N, 2]`` (x, y) inside the breast."""
    inner = maps.breast & ~maps.pectoral & (maps.skin_distance >= 5.0 / pixel_spacing_mm)
    if not inner.any():
        inner = maps.breast & ~maps.pectoral
    rows, cols = np.nonzero(inner)
    pick = rng.integers(rows.size)
    centre = np.array([cols[pick], rows[pick]], dtype=np.float64)
    spread = max(3.0 / pixel_spacing_mm, 1.5)
    points: list[tuple[int, int]] = []
    for offset in rng.normal(0.0, spread, size=(4 * count, 2)):
        x, y = np.rint(centre + offset).astype(int)
        inside = 0 <= y < inner.shape[0] and 0 <= x < inner.shape[1] and inner[y, x]
        if inside and (x, y) not in points:
            points.append((x, y))
        if len(points) == count:
            break
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


# ---------------------------------------------------------------------------- rendering
def tissue_std(image: np.ndarray, maps: BreastMaps, pixel_spacing_mm: float) -> float:
    """The spread of tissue intensities in the breast interior, the unit of mass contrast."""
    interior = maps.breast & ~maps.pectoral & (maps.skin_distance >= 12.0 / pixel_spacing_mm)
    if interior.sum() < 16:
        interior = maps.breast & ~maps.pectoral
    return float(image[interior].std())


def render_mass(image: np.ndarray, mask: np.ndarray, amplitude: float, blur_px: float) -> None:
    """Blend a mass into ``image`` in place: a denser region with soft edges."""
    rr, cc = np.nonzero(mask)
    if rr.size == 0:
        return
    pad = int(np.ceil(4 * blur_px)) + 1
    r0, r1 = max(rr.min() - pad, 0), min(rr.max() + pad + 1, mask.shape[0])
    c0, c1 = max(cc.min() - pad, 0), min(cc.max() + pad + 1, mask.shape[1])
    local = mask[r0:r1, c0:c1].astype(np.float64)
    profile = ndimage.gaussian_filter(local, blur_px) if blur_px > 0 else local
    image[r0:r1, c0:c1] += amplitude * profile


def render_calcifications(image: np.ndarray, points_xy: np.ndarray, amplitude: np.ndarray,
                          sigma_px: float) -> None:
    """Tiny bright dots (Gaussian spots of peak ``amplitude``) at integer pixel positions."""
    if len(points_xy) == 0:
        return
    spikes = np.zeros_like(image)
    cols, rows = points_xy[:, 0].astype(int), points_xy[:, 1].astype(int)
    np.add.at(spikes, (rows, cols), amplitude * 2.0 * np.pi * sigma_px**2)
    image += ndimage.gaussian_filter(spikes, sigma_px)


# ---------------------------------------------------------------------------- one view
@dataclass
class PlacedMass:
    """A mass as drawn in one view: its written polygon and the filled, clipped mask."""

    polygon_xy: np.ndarray  # [K, 2] float (x, y), exactly the values written as "%f"
    mask: np.ndarray  # bool [H, W]
    shape: MassShape


@dataclass
class ViewPhantom:
    """One synthetic mammogram and its ground truth."""

    pixels: np.ndarray  # uint16 [H, W], values < 2**14
    maps: BreastMaps
    masses: list[PlacedMass]
    calcifications: np.ndarray  # [N, 2] float (x, y), integer-valued
    overhang_mass: int | None  # index of the mass that reaches beyond the image, if any


def as_written(xy: np.ndarray) -> np.ndarray:
    """Round coordinates exactly as printf ``%f`` writes them, so a reader parses these values."""
    return np.array([[float(f"{value:f}") for value in row] for row in xy], dtype=np.float64)


def render_view(image_shape: tuple[int, int], laterality: str, view: str, acr: int,
                mass_shapes: list[MassShape], n_calcifications: int, pixel_spacing_mm: float,
                rng: np.random.Generator, overhang: bool = False,
                intensity_scale: float = 1.0) -> ViewPhantom:
    """Draw one view: breast, tissue, the given masses at random spots, calcifications, noise.

    With ``overhang`` the first mass touches the chest wall and one polygon point lies 3 px
    outside the image; its mask is clipped to the image. ``intensity_scale`` multiplies the
    finished values (``finish_image``); the random draws do not depend on it.
    """
    maps = breast_maps(image_shape, laterality, view, rng)
    image = tissue_image(maps, acr, pixel_spacing_mm, rng)
    unit = tissue_std(image, maps, pixel_spacing_mm)
    margin_px = max(2.0 / pixel_spacing_mm, 1.0)
    occupied = np.zeros(image_shape, dtype=bool)
    masses: list[PlacedMass] = []
    overhang_mass = None
    for index, shape in enumerate(mass_shapes):
        rotation, scale = rng.uniform(0.0, 2.0 * np.pi), rng.uniform(0.9, 1.1)
        hug = maps.chest_wall_left if overhang and index == 0 else None
        polygon = _place_mass(shape, maps, occupied, margin_px, pixel_spacing_mm, rotation,
                              scale, hug, rng)
        if polygon is None and hug is not None:
            logger.warning("render_view: no room for a mass at the chest wall; placed normally")
            hug = None
            polygon = _place_mass(shape, maps, occupied, margin_px, pixel_spacing_mm, rotation,
                                  scale, None, rng)
        if polygon is None:
            raise ValueError(f"render_view: no room for a {shape.diameter_mm:.1f} mm mass in a "
                             f"{image_shape} image; use a larger image_shape")
        if hug is not None:
            overhang_mass = index
        mask = polygon_mask(polygon, image_shape)
        occupied |= ndimage.binary_dilation(mask, iterations=int(np.ceil(margin_px)))
        blur_px = max(shape.edge_blur_mm / pixel_spacing_mm, 0.4)
        render_mass(image, mask, shape.contrast * unit, blur_px)
        masses.append(PlacedMass(polygon, mask, shape))
    points = calcification_points(maps, n_calcifications, pixel_spacing_mm, rng)
    amplitude = rng.uniform(0.35, 0.7, len(points)) * (GLAND_LEVEL - FAT_LEVEL)
    render_calcifications(image, points, amplitude, max(0.35 / pixel_spacing_mm, 0.6))
    pixels = finish_image(image, rng, intensity_scale)
    return ViewPhantom(pixels, maps, masses, points, overhang_mass)


def _place_mass(shape: MassShape, maps: BreastMaps, occupied: np.ndarray, margin_px: float,
                pixel_spacing_mm: float, rotation: float, scale: float,
                chest_wall_left: bool | None, rng: np.random.Generator) -> np.ndarray | None:
    """Place the outline; shrink it (never below 5 mm) when the breast has no room for it."""
    free = free_space(maps, occupied)
    for _ in range(6):
        outline = mass_outline(shape, pixel_spacing_mm, rotation, scale)
        placed = place_outline(outline, free, margin_px, rng, chest_wall_left)
        if placed is not None:
            return as_written(placed)
        scale *= 0.8
    return None
