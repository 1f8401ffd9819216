"""Using an export: ``zoo predict`` (:mod:`zoo.deploy.predict`), its artifact run on your
files through one of zoo's runtimes, its outputs named by the labels the export carries."""
