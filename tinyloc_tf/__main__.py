import sys

from tinyloc_tf.cli import main

sys.exit(main())
