//! Geo math: great-circle distances on a spherical Earth.

/// Mean Earth radius (IUGG), km. The spherical model is within ~0.5% of the
/// WGS-84 geodesic, which is far finer than IP geolocation itself.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Haversine distance in km between two (lat, lon) points in degrees.
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = lon2 - lon1;
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    // Clamp: rounding can push h a hair above 1 for antipodal points.
    2.0 * EARTH_RADIUS_KM * h.clamp(0.0, 1.0).sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values: WGS-84 geodesic distances (Karney's algorithm, as
    /// computed with GeographicLib 2.0) between city centres.
    #[test]
    fn city_pairs_within_half_a_percent_of_the_geodesic() {
        let london = (51.5074, -0.1278);
        let new_york = (40.7128, -74.0060);
        let sydney = (-33.8688, 151.2093);
        let tokyo = (35.6762, 139.6503);
        let paris = (48.8566, 2.3522);
        let berlin = (52.5200, 13.4050);
        let sao_paulo = (-23.5505, -46.6333);
        let johannesburg = (-26.2041, 28.0473);
        let los_angeles = (34.0522, -118.2437);
        let singapore = (1.3521, 103.8198);
        let cases = [
            (london, new_york, 5_585.2),
            (sydney, tokyo, 7_792.2),
            (paris, berlin, 879.7),
            (sao_paulo, johannesburg, 7_441.8),
            (los_angeles, singapore, 14_133.2),
            (london, sydney, 16_989.3),
        ];
        for (a, b, want) in cases {
            let got = haversine_km(a, b);
            let err = (got - want).abs() / want;
            assert!(err < 0.005, "{a:?} -> {b:?}: got {got:.0} km, want {want} km ({:.2}%)", err * 100.0);
        }
    }

    #[test]
    fn zero_and_antipodes() {
        assert_eq!(haversine_km((10.0, 20.0), (10.0, 20.0)), 0.0);
        let half = haversine_km((0.0, 0.0), (0.0, 180.0));
        assert!((half - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6);
    }
}
