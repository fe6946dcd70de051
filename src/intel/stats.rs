//! Small statistics over per-slide series: mean and standard deviation,
//! least-squares slope, z-scores robust to zero variance, Pearson correlation.
//! Each is O(n) over at most a window's slides.

/// Mean and population standard deviation; `None` for an empty series.
pub fn mean_std(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    Some((mean, var.max(0.0).sqrt()))
}

/// Least-squares slope of `ys` against 0, 1, 2, ... (units per slide).
pub fn slope(ys: &[f64]) -> Option<f64> {
    if ys.len() < 2 {
        return None;
    }
    let n = ys.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (y - my);
        sxx += dx * dx;
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// How far `x` is from a baseline, in standard deviations. With (near) zero
/// variance the deviation is measured against a floor of 10% of the mean (at
/// least 1), so a flat series followed by a real jump still counts, and a
/// flat series followed by the same value never does.
pub fn z_score(x: f64, mean: f64, std: f64) -> f64 {
    let floor = (0.1 * mean.abs()).max(1.0);
    let scale = if std > 1e-9 { std } else { floor };
    (x - mean) / scale
}

/// Pearson correlation of two equally long series; `None` when either is
/// constant or they are shorter than 3.
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    if xs.len() != ys.len() || xs.len() < 3 {
        return None;
    }
    let (mx, sx) = mean_std(xs)?;
    let (my, sy) = mean_std(ys)?;
    if sx < 1e-12 || sy < 1e-12 {
        return None;
    }
    let n = xs.len() as f64;
    let cov = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / n;
    Some((cov / (sx * sy)).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn mean_std_table() {
        assert_eq!(mean_std(&[]), None);
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap_or_default();
        assert!(close(m, 5.0) && close(s, 2.0));
        let (m, s) = mean_std(&[3.0, 3.0, 3.0]).unwrap_or_default();
        assert!(close(m, 3.0) && close(s, 0.0));
    }

    #[test]
    fn slopes() {
        assert!(close(slope(&[1.0, 2.0, 3.0, 4.0]).unwrap_or_default(), 1.0));
        assert!(close(slope(&[10.0, 8.0, 6.0]).unwrap_or_default(), -2.0));
        assert!(close(slope(&[5.0, 5.0, 5.0]).unwrap_or_default(), 0.0));
        assert_eq!(slope(&[1.0]), None);
    }

    #[test]
    fn z_scores_handle_zero_variance() {
        assert!(close(z_score(12.0, 10.0, 1.0), 2.0));
        assert!(close(z_score(10.0, 10.0, 0.0), 0.0), "flat stays flat");
        assert!(close(z_score(40.0, 10.0, 0.0), 30.0), "a jump after a flat series is large");
        assert!(close(z_score(1.0, 0.0, 0.0), 1.0), "floor of 1 around zero");
    }

    #[test]
    fn pearson_table() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!(close(pearson(&a, &[2.0, 4.0, 6.0, 8.0, 10.0]).unwrap_or_default(), 1.0));
        assert!(close(pearson(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]).unwrap_or_default(), -1.0));
        assert_eq!(pearson(&a, &[1.0; 5]), None, "constant series");
        assert_eq!(pearson(&a[..2], &a[..2]), None, "too short");
        let r = pearson(&a, &[2.0, 1.0, 4.0, 3.0, 5.0]).unwrap_or_default();
        assert!(r > 0.7 && r < 0.9, "{r}");
    }
}
