-- A whole image pipeline in Spark SQL alone, with sparkmm's mm_* functions (seed 000 + 004):
-- list photos, load them, keep the well-sized ones, make 224x224 RGB JPEG thumbnails, embed them,
-- count the failures by reason, and save the result as a table.
--
-- The functions exist once `sparkmm.register(spark)` ran in the session. Run the file with
--     sparkmm sql docs/sql_pipeline.sql --set photos_dir=/data/photos
-- (statement by statement, results of the last one printed), or paste the statements into a
-- notebook's %sql cells. photos_dir below is the default; SET is SQL too.

SET photos_dir = /data/photos;

-- 1. The files: only paths are read here (the binaryFile source skips content nobody selects).
CREATE OR REPLACE TEMPORARY VIEW photo_files AS
SELECT path FROM binaryFile.`${photos_dir}/*`;

-- 2. Load (local files stay by reference: the bytes never cross into the JVM) and read properties.
CREATE OR REPLACE TEMPORARY VIEW photos AS
SELECT path,
       element_at(split(path, '/'), -1) AS id,
       mm_image_load(path) AS img
FROM photo_files;

-- 3. Failures by reason (corrupt, truncated, unsupported, ...): a bad file never fails the query.
CREATE OR REPLACE TEMPORARY VIEW load_failures AS
SELECT split(mm_image_error(img), ':')[0] AS reason, count(*) AS files, first(path) AS example
FROM photos
WHERE mm_image_error(img) IS NOT NULL
GROUP BY 1;

-- 4. Clean, transform and embed the good ones.
CREATE OR REPLACE TEMPORARY VIEW cleaned AS
SELECT id, path,
       mm_image_width(img) AS width,
       mm_image_height(img) AS height,
       mm_image_format(img) AS format,
       mm_image_encode(mm_image_convert(mm_image_resize(img, 224, 224), 'RGB'), 'JPEG', 90) AS thumbnail,
       mm_image_phash(img) AS phash,
       mm_image_embed(mm_image_resize(img, 224, 224), 'efficientnet-lite0') AS embedding
FROM photos
WHERE mm_image_error(img) IS NULL
  AND mm_image_width(img) BETWEEN 400 AND 5000
  AND mm_image_height(img) BETWEEN 300 AND 6000;

-- 5. Save (parquet here; USING delta on clusters with delta-spark).
DROP TABLE IF EXISTS cleaned_images;
CREATE TABLE cleaned_images USING parquet AS SELECT * FROM cleaned;
