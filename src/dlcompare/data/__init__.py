"""Getting the photos: fetch (download or link), archive reading, image decoding, splitting."""
