"""`make bench`: measurements of twotier's costs against its goals and against the obvious alternatives."""
