//! Chip-level interconnect topologies and their deterministic routes.
//!
//! Chips sit on a `width × height` grid; every chip has a router with up to six
//! directed links to neighbours. Routes are dimension-ordered (and therefore form a
//! tree from any source, which is what multicast uses).

use serde::{Deserialize, Serialize};

/// A chip's position on the grid.
pub type Chip = u32;

/// Directions of the links out of a router (SpiNNaker's order: E, NE, N, W, SW, S).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Dir {
    /// +x.
    East,
    /// +x +y (triangular torus only).
    NorthEast,
    /// +y.
    North,
    /// −x.
    West,
    /// −x −y (triangular torus only).
    SouthWest,
    /// −y.
    South,
}

impl Dir {
    /// Every direction, in link-index order.
    pub const ALL: [Dir; 6] = [Dir::East, Dir::NorthEast, Dir::North, Dir::West, Dir::SouthWest, Dir::South];

    /// Grid step of this direction.
    pub fn delta(self) -> (i64, i64) {
        match self {
            Dir::East => (1, 0),
            Dir::NorthEast => (1, 1),
            Dir::North => (0, 1),
            Dir::West => (-1, 0),
            Dir::SouthWest => (-1, -1),
            Dir::South => (0, -1),
        }
    }

    /// Index 0..6.
    pub fn index(self) -> usize {
        self as usize
    }

    /// North or south (the y dimension).
    pub fn is_vertical(self) -> bool {
        matches!(self, Dir::North | Dir::South)
    }

    /// The direction back.
    pub fn opposite(self) -> Dir {
        Dir::ALL[(self.index() + 3) % 6]
    }

    /// The two directions that together make the same step as this one (the other
    /// two sides of a triangle): SpiNNaker's emergency route.
    pub fn emergency(self) -> (Dir, Dir) {
        match self {
            Dir::East => (Dir::NorthEast, Dir::South),
            Dir::NorthEast => (Dir::North, Dir::East),
            Dir::North => (Dir::West, Dir::NorthEast),
            Dir::West => (Dir::SouthWest, Dir::North),
            Dir::SouthWest => (Dir::South, Dir::West),
            Dir::South => (Dir::East, Dir::SouthWest),
        }
    }
}

/// How chips are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// 2D mesh, 4 links per chip, XY routing (TrueNorth, Loihi's NoC between cores).
    Mesh,
    /// 2D torus, wrap-around links, XY routing along the shorter way.
    Torus,
    /// SpiNNaker's triangular torus: 6 links per chip (E, NE, N, W, SW, S) with
    /// wrap-around; shortest routes, diagonal first.
    TriangularTorus,
    /// Two levels (DYNAP-SE): a 2D mesh between chips with XY routing, and inside
    /// each chip a core-level router that every spike for another core crosses
    /// (`intra_chip_latency_ns`, one delivery at a time: `fabric::CoreRouters`).
    Hierarchical,
}

/// A grid of chips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Connection pattern.
    pub kind: Kind,
    /// Chips along x.
    pub width: u32,
    /// Chips along y.
    pub height: u32,
}

impl Topology {
    /// Number of chips.
    pub fn chips(&self) -> u32 {
        self.width * self.height
    }

    /// Grid position of a chip.
    pub fn xy(&self, c: Chip) -> (i64, i64) {
        ((c % self.width) as i64, (c / self.width) as i64)
    }

    /// The chip at a grid position (wrapped on tori).
    pub fn chip(&self, x: i64, y: i64) -> Option<Chip> {
        let (w, h) = (self.width as i64, self.height as i64);
        let (x, y) = match self.kind {
            Kind::Mesh | Kind::Hierarchical => (x, y),
            Kind::Torus | Kind::TriangularTorus => (x.rem_euclid(w), y.rem_euclid(h)),
        };
        ((0..w).contains(&x) && (0..h).contains(&y)).then(|| (y * w + x) as Chip)
    }

    /// The neighbour in direction `d`, if that link exists.
    pub fn neighbour(&self, c: Chip, d: Dir) -> Option<Chip> {
        if self.kind != Kind::TriangularTorus && matches!(d, Dir::NorthEast | Dir::SouthWest) {
            return None;
        }
        let (x, y) = self.xy(c);
        let (dx, dy) = d.delta();
        let n = self.chip(x + dx, y + dy)?;
        (n != c).then_some(n)
    }

    /// Directed link id of (chip, direction): `chip * 6 + direction`.
    pub fn link(&self, c: Chip, d: Dir) -> usize {
        c as usize * 6 + d.index()
    }

    /// Number of link ids (some unused on meshes).
    pub fn link_ids(&self) -> usize {
        self.chips() as usize * 6
    }

    /// Every directed link that exists, as (from, direction, to).
    pub fn links(&self) -> Vec<(Chip, Dir, Chip)> {
        (0..self.chips())
            .flat_map(|c| Dir::ALL.iter().filter_map(move |&d| self.neighbour(c, d).map(|n| (c, d, n))))
            .collect()
    }

    /// The signed x and y steps of the dimension-ordered route from `src` to `dst`
    /// on a mesh, torus or hierarchical grid (the shorter way round a torus's
    /// rings; half-way ties the negative way where `negative[dim]`).
    pub fn offsets(&self, src: Chip, dst: Chip, negative: [bool; 2]) -> (i64, i64) {
        let (sx, sy) = self.xy(src);
        let (tx, ty) = self.xy(dst);
        if self.kind != Kind::Torus {
            return (tx - sx, ty - sy);
        }
        let ties = self.ties(src, dst);
        let (w, h) = (self.width as i64, self.height as i64);
        let flip = |d: i64, n: i64, k: usize| if ties[k] && negative[k] { d - n } else { d };
        (flip(Self::ring_offset(sx, tx, w), w, 0), flip(Self::ring_offset(sy, ty, h), h, 1))
    }

    /// Signed offset along one ring of `n` positions, the shorter way (ties go
    /// the positive way).
    fn ring_offset(from: i64, to: i64, n: i64) -> i64 {
        let d = (to - from).rem_euclid(n);
        if d * 2 <= n {
            d
        } else {
            d - n
        }
    }

    /// The route from `src` to `dst` as the directions taken, in order.
    pub fn route(&self, src: Chip, dst: Chip) -> Vec<Dir> {
        self.route_ties(src, dst, [false, false])
    }

    /// On a torus, whether the way along x and along y is a tie (the target half
    /// way round the ring): either direction is as short.
    pub fn ties(&self, src: Chip, dst: Chip) -> [bool; 2] {
        if self.kind != Kind::Torus {
            return [false, false];
        }
        let (sx, sy) = self.xy(src);
        let (tx, ty) = self.xy(dst);
        let tie = |from: i64, to: i64, n: i64| n > 1 && (to - from).rem_euclid(n) * 2 == n;
        [tie(sx, tx, self.width as i64), tie(sy, ty, self.height as i64)]
    }

    /// [`Topology::route`], taking the negative way where `negative[dim]` and that
    /// dimension is a tie (torus; BookSim balances ties so).
    pub fn route_ties(&self, src: Chip, dst: Chip, negative: [bool; 2]) -> Vec<Dir> {
        let (sx, sy) = self.xy(src);
        let (tx, ty) = self.xy(dst);
        let (w, h) = (self.width as i64, self.height as i64);
        let mut out = Vec::new();
        let mut push = |d: Dir, n: i64| out.extend(std::iter::repeat_n(d, n.unsigned_abs() as usize));
        match self.kind {
            Kind::Mesh | Kind::Torus | Kind::Hierarchical => {
                let (dx, dy) = self.offsets(src, dst, negative);
                push(if dx >= 0 { Dir::East } else { Dir::West }, dx);
                push(if dy >= 0 { Dir::North } else { Dir::South }, dy);
            }
            Kind::TriangularTorus => {
                // Among the wrap-around images of the target, the one with the fewest
                // hops, where a step along the diagonal moves x and y together.
                let mut best: Option<(i64, i64, i64)> = None;
                for ox in [-w, 0, w] {
                    for oy in [-h, 0, h] {
                        let (dx, dy) = (tx + ox - sx, ty + oy - sy);
                        let hops =
                            if dx.signum() * dy.signum() > 0 { dx.abs().max(dy.abs()) } else { dx.abs() + dy.abs() };
                        if best.is_none_or(|b| (hops, dx, dy) < b) {
                            best = Some((hops, dx, dy));
                        }
                    }
                }
                let (_, dx, dy) = best.unwrap_or((0, 0, 0));
                if dx.signum() * dy.signum() > 0 {
                    let diag = dx.abs().min(dy.abs()) * dx.signum();
                    push(if diag > 0 { Dir::NorthEast } else { Dir::SouthWest }, diag);
                    let (rx, ry) = (dx - diag, dy - diag);
                    push(if rx >= 0 { Dir::East } else { Dir::West }, rx);
                    push(if ry >= 0 { Dir::North } else { Dir::South }, ry);
                } else {
                    push(if dx >= 0 { Dir::East } else { Dir::West }, dx);
                    push(if dy >= 0 { Dir::North } else { Dir::South }, dy);
                }
            }
        }
        out
    }

    /// Hop count of the route.
    pub fn hops(&self, src: Chip, dst: Chip) -> usize {
        self.route(src, dst).len()
    }

    /// Links cut by the vertical bisection (one direction): the bound on
    /// uniform-random throughput.
    pub fn bisection_links(&self) -> u32 {
        match self.kind {
            Kind::Mesh | Kind::Hierarchical => self.height,
            Kind::Torus => 2 * self.height,
            // E and NE links cross a vertical cut, twice with wrap-around.
            Kind::TriangularTorus => 4 * self.height,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_arrive_and_are_minimal() {
        for kind in [Kind::Mesh, Kind::Torus, Kind::TriangularTorus, Kind::Hierarchical] {
            let t = Topology { kind, width: 5, height: 4 };
            for s in 0..t.chips() {
                for d in 0..t.chips() {
                    let mut at = s;
                    for dir in t.route(s, d) {
                        at = t.neighbour(at, dir).unwrap_or_else(|| panic!("{kind:?}: no link {dir:?} from {at}"));
                    }
                    assert_eq!(at, d, "{kind:?}: route {s}->{d} ends at {at}");
                }
            }
        }
        let t = Topology { kind: Kind::TriangularTorus, width: 8, height: 8 };
        assert_eq!(t.hops(t.chip(0, 0).unwrap(), t.chip(3, 3).unwrap()), 3);
        assert_eq!(t.hops(t.chip(0, 0).unwrap(), t.chip(3, -2).unwrap()), 5);
        assert_eq!(t.hops(t.chip(0, 0).unwrap(), t.chip(7, 7).unwrap()), 1, "wraps to SW");
    }

    /// Every route is a shortest path: its hop count equals the breadth-first
    /// distance over the topology's links, for every pair of chips, every kind,
    /// on odd and even, square and oblong grids (wrap-around ties included).
    #[test]
    fn every_route_is_as_short_as_a_breadth_first_search() {
        for kind in [Kind::Mesh, Kind::Torus, Kind::TriangularTorus, Kind::Hierarchical] {
            for (width, height) in [(1, 1), (2, 3), (4, 4), (5, 4), (7, 3), (6, 6)] {
                let t = Topology { kind, width, height };
                for s in 0..t.chips() {
                    let mut dist = vec![u32::MAX; t.chips() as usize];
                    dist[s as usize] = 0;
                    let mut queue = std::collections::VecDeque::from([s]);
                    while let Some(c) = queue.pop_front() {
                        for d in Dir::ALL {
                            if let Some(n) = t.neighbour(c, d) {
                                if dist[n as usize] == u32::MAX {
                                    dist[n as usize] = dist[c as usize] + 1;
                                    queue.push_back(n);
                                }
                            }
                        }
                    }
                    for d in 0..t.chips() {
                        let hops = t.hops(s, d) as u32;
                        assert_eq!(hops, dist[d as usize], "{kind:?} {width}x{height}: {s} -> {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn emergency_routes_close_the_triangle() {
        for d in Dir::ALL {
            let (a, b) = d.emergency();
            let (da, db) = (a.delta(), b.delta());
            assert_eq!((da.0 + db.0, da.1 + db.1), d.delta(), "{d:?}");
        }
    }
}
