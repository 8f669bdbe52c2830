//! Small hand-made data sets shared by the model, training and artifact tests.

use crate::data::{AgeBucket, Dataset, Gender, Movie, Rating, RatingScale, User, Watch};

/// Movie ids 1..=12; 11 and 12 are adult and loved by the adults, so any list that is not
/// filtered would show them.
pub const ADULT_MOVIES: [u32; 2] = [11, 12];
/// Under 18 with a full history.
pub const MINOR: u32 = 7;
/// Age unknown, full history.
pub const UNKNOWN_AGE: u32 = 8;
/// Under 18 with two ratings: cold start.
pub const COLD_MINOR: u32 = 9;
/// Watched movies 1 and 2, rated nothing.
pub const WATCHER: u32 = 10;
/// Adult with a full history and watches of movies 3 and 4 (unrated).
pub const ADULT: u32 = 1;

fn rating(user: u32, movie: u32, value: f32) -> Rating {
    Rating {
        user,
        movie,
        value,
        timestamp: i64::from(user * 100 + movie),
    }
}

/// The fixture data set (see the constants for the roles of users 1–10).
pub fn dataset() -> Dataset {
    let movies = (1..=12)
        .map(|id| Movie {
            id,
            title: format!("Movie {id}"),
            year: Some(1990),
            genres: vec!["Drama".into()],
            adult: ADULT_MOVIES.contains(&id),
            external_rating: None,
        })
        .collect();
    let mut users: Vec<User> = (1..=6)
        .map(|id| User {
            id,
            gender: Some(if id % 2 == 0 {
                Gender::Female
            } else {
                Gender::Male
            }),
            age: Some(AgeBucket::From25To34),
            occupation: Some("engineer".into()),
        })
        .collect();
    for (id, age) in [
        (MINOR, Some(AgeBucket::Under18)),
        (UNKNOWN_AGE, None),
        (COLD_MINOR, Some(AgeBucket::Under18)),
    ] {
        users.push(User {
            id,
            gender: Some(Gender::Female),
            age,
            occupation: Some("student".into()),
        });
    }
    let mut ratings = Vec::new();
    for user in 1..=8_u32 {
        for movie in 1..=10_u32 {
            if (user * 7 + movie * 3) % 4 != 0 {
                ratings.push(rating(user, movie, (1 + (user + movie) % 5) as f32));
            }
        }
        if user <= 6 {
            for movie in ADULT_MOVIES {
                ratings.push(rating(user, movie, 5.0));
            }
        }
    }
    ratings.push(rating(COLD_MINOR, 1, 4.0));
    ratings.push(rating(COLD_MINOR, 2, 3.0));
    let watches = [(ADULT, 3), (ADULT, 4), (WATCHER, 1), (WATCHER, 2)]
        .into_iter()
        .map(|(user, movie)| Watch {
            user,
            movie,
            minute: 10,
            timestamp: 0,
        })
        .collect();
    Dataset {
        users,
        movies,
        ratings,
        watches,
        scale: RatingScale::WHOLE_STARS,
    }
}

/// Solves `matrix · x = rhs` by Gaussian elimination with partial pivoting: an independent
/// check of the `faer` solves in the EASE and ALS tests.
pub fn solve_dense(mut matrix: Vec<Vec<f64>>, mut rhs: Vec<f64>) -> Vec<f64> {
    let size = rhs.len();
    for col in 0..size {
        let pivot = (col..size)
            .max_by(|&r, &s| matrix[r][col].abs().total_cmp(&matrix[s][col].abs()))
            .unwrap();
        matrix.swap(col, pivot);
        rhs.swap(col, pivot);
        for row in col + 1..size {
            let factor = matrix[row][col] / matrix[col][col];
            let (upper, lower) = matrix.split_at_mut(row);
            for (x, y) in lower[0][col..].iter_mut().zip(&upper[col][col..]) {
                *x -= factor * y;
            }
            rhs[row] -= factor * rhs[col];
        }
    }
    let mut solution = vec![0.0; size];
    for row in (0..size).rev() {
        let tail: f64 = (row + 1..size).map(|k| matrix[row][k] * solution[k]).sum();
        solution[row] = (rhs[row] - tail) / matrix[row][row];
    }
    solution
}
